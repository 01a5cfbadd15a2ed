/**
 * GGUF writer (version 3, little-endian): metadata in the order given, then tensor infos, the data section
 * aligned to `general.alignment` (32 unless given), each tensor padded to the alignment as gguf-py does.
 * Written to a temp file and renamed (atomic).
 */
import { FormatError } from "../../errors.js";
import type { Tensor } from "../../tensor/tensor.js";
import { itemsize } from "../../tensor/dtype.js";
import { bytesOf, numel } from "../../tensor/tensor-impl.js";
import { writeAll, writeFileAtomic } from "../atomic-file.js";
import { GGML_MAX_DIMS, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgufType, ggmlTypeOf } from "./constants.js";
import { ByteBuilder, encodeValue } from "./encode.js";
import type { GgufValue } from "./value.js";

/** llama.cpp's GGML_MAX_NAME: tensor names must be shorter (with the terminating NUL). */
export const GGML_MAX_NAME = 64;

export interface GgufWriteInput {
  readonly metadata: Iterable<readonly [string, GgufValue]>;
  readonly tensors: Iterable<readonly [string, Tensor]>;
}

/** The header bytes (padded to the alignment) and the tensors in file order with their padded sizes. */
export function buildGgufHeader(path: string, input: GgufWriteInput): { header: Uint8Array; tensors: Array<{ name: string; bytes: Uint8Array; padded: number }>; alignment: number } {
  const meta: Array<readonly [string, GgufValue]> = [];
  const keys = new Set<string>();
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  for (const [key, v] of input.metadata) {
    if (keys.has(key)) throw new FormatError(path, `metadata key '${key}' given twice`);
    keys.add(key);
    if (key === "general.alignment") {
      if (v.type !== GgufType.UINT32 || v.value === 0 || (v.value & (v.value - 1)) !== 0) throw new FormatError(path, "general.alignment must be a UINT32 power of two");
      alignment = v.value;
    }
    meta.push([key, v]);
  }
  const tensors: Array<{ name: string; bytes: Uint8Array; padded: number; t: Tensor }> = [];
  const names = new Set<string>();
  for (const [name, t] of input.tensors) {
    const where = `tensor '${name}'`;
    if (names.has(name)) throw new FormatError(path, `${where} given twice`);
    names.add(name);
    if (Buffer.byteLength(name, "utf8") >= GGML_MAX_NAME) throw new FormatError(path, `${where}: name is ${Buffer.byteLength(name, "utf8")} bytes, llama.cpp allows at most ${GGML_MAX_NAME - 1}`);
    if (ggmlTypeOf(t.dtype) === undefined) throw new FormatError(path, `${where}: dtype ${t.dtype} has no GGUF type (F32, F16, BF16, F64, I8..I64)`);
    if (t.shape.length < 1 || t.shape.length > GGML_MAX_DIMS) throw new FormatError(path, `${where}: ${t.shape.length}-D shape [${t.shape.join(", ")}], GGUF holds 1 to ${GGML_MAX_DIMS} dimensions`);
    const n = numel(t.shape);
    if (t.data.byteLength !== n * itemsize(t.dtype)) throw new FormatError(path, `${where}: ${t.dtype} [${t.shape.join(", ")}] needs ${n * itemsize(t.dtype)} bytes, data has ${t.data.byteLength}`);
    const bytes = bytesOf(t);
    tensors.push({ name, bytes, padded: Math.ceil(bytes.byteLength / alignment) * alignment, t });
  }

  const b = new ByteBuilder();
  b.u32(GGUF_MAGIC);
  b.u32(GGUF_VERSION);
  b.u64(tensors.length);
  b.u64(meta.length);
  for (const [key, v] of meta) {
    b.string(key);
    b.u32(v.type);
    encodeValue(b, v.type, v.value, `${path}: metadata key '${key}'`, v.type === GgufType.ARRAY ? v.itemType : undefined);
  }
  let offset = 0;
  for (const { name, t, padded } of tensors) {
    b.string(name);
    b.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) b.u64(t.shape[d]!);
    b.u32(ggmlTypeOf(t.dtype)!);
    b.u64(offset);
    offset += padded;
  }
  b.zeros((alignment - (b.length % alignment)) % alignment);
  return { header: b.bytes(), tensors: tensors.map(({ name, bytes, padded }) => ({ name, bytes, padded })), alignment };
}

/** Write a GGUF file atomically. */
export async function writeGguf(path: string, input: GgufWriteInput): Promise<void> {
  const { header, tensors } = buildGgufHeader(path, input);
  await writeFileAtomic(path, async (fh) => {
    let pos = await writeAll(fh, header, 0);
    const pad = new Uint8Array(64);
    for (const { bytes, padded } of tensors) {
      pos = await writeAll(fh, bytes, pos);
      let rest = padded - bytes.byteLength;
      while (rest > 0) {
        const n = Math.min(rest, pad.byteLength);
        pos = await writeAll(fh, pad.subarray(0, n), pos);
        rest -= n;
      }
    }
  });
}
