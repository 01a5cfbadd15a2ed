/**
 * GGUF writer (version 3, little-endian): metadata in the order given, then tensor infos, the data section
 * aligned to `general.alignment` (32 unless given), each tensor padded to the alignment as gguf-py does.
 * Written to a temp file and renamed (atomic).
 */
import { FormatError } from "../../errors.js";
import type { Tensor } from "../../tensor/tensor.js";
import { itemsize, type DType } from "../../tensor/dtype.js";
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

/** What the header says of one tensor: enough to lay out the file before any tensor data exists. */
export interface GgufTensorPlan {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/**
 * The header bytes (padded to the alignment) for `metadata` and the tensors of `plan` in file order, and each
 * tensor's padded size in the data section. Validates keys, alignment, names, dtypes and ranks. Shared by
 * `writeGguf` and the streaming writer (sdk/src/adapter/gguf-stream-writer.ts), so both write the same bytes.
 */
export function layoutGgufHeader(path: string, metadata: Iterable<readonly [string, GgufValue]>, plan: readonly GgufTensorPlan[]): { header: Uint8Array; padded: number[]; alignment: number } {
  const meta: Array<readonly [string, GgufValue]> = [];
  const keys = new Set<string>();
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  for (const [key, v] of metadata) {
    if (keys.has(key)) throw new FormatError(path, `metadata key '${key}' given twice`);
    keys.add(key);
    if (key === "general.alignment") {
      if (v.type !== GgufType.UINT32 || v.value === 0 || (v.value & (v.value - 1)) !== 0) throw new FormatError(path, "general.alignment must be a UINT32 power of two");
      alignment = v.value;
    }
    meta.push([key, v]);
  }
  const b = new ByteBuilder();
  b.u32(GGUF_MAGIC);
  b.u32(GGUF_VERSION);
  b.u64(plan.length);
  b.u64(meta.length);
  for (const [key, v] of meta) {
    b.string(key);
    b.u32(v.type);
    encodeValue(b, v.type, v.value, `${path}: metadata key '${key}'`, v.type === GgufType.ARRAY ? v.itemType : undefined);
  }
  const names = new Set<string>();
  const padded: number[] = [];
  let offset = 0;
  for (const t of plan) {
    const where = `tensor '${t.name}'`;
    if (names.has(t.name)) throw new FormatError(path, `${where} given twice`);
    names.add(t.name);
    if (Buffer.byteLength(t.name, "utf8") >= GGML_MAX_NAME) throw new FormatError(path, `${where}: name is ${Buffer.byteLength(t.name, "utf8")} bytes, llama.cpp allows at most ${GGML_MAX_NAME - 1}`);
    const type = ggmlTypeOf(t.dtype);
    if (type === undefined) throw new FormatError(path, `${where}: dtype ${t.dtype} has no GGUF type (F32, F16, BF16, F64, I8..I64)`);
    if (t.shape.length < 1 || t.shape.length > GGML_MAX_DIMS) throw new FormatError(path, `${where}: ${t.shape.length}-D shape [${t.shape.join(", ")}], GGUF holds 1 to ${GGML_MAX_DIMS} dimensions`);
    b.string(t.name);
    b.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) b.u64(t.shape[d]!);
    b.u32(type);
    b.u64(offset);
    const size = Math.ceil((numel(t.shape) * itemsize(t.dtype)) / alignment) * alignment;
    padded.push(size);
    offset += size;
  }
  b.zeros((alignment - (b.length % alignment)) % alignment);
  return { header: b.bytes(), padded, alignment };
}

/** The header bytes (padded to the alignment) and the tensors in file order with their padded sizes. */
export function buildGgufHeader(path: string, input: GgufWriteInput): { header: Uint8Array; tensors: Array<{ name: string; bytes: Uint8Array; padded: number }>; alignment: number } {
  const entries = [...input.tensors];
  const { header, padded, alignment } = layoutGgufHeader(path, input.metadata, entries.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })));
  const tensors = entries.map(([name, t], i) => {
    const n = numel(t.shape);
    if (t.data.byteLength !== n * itemsize(t.dtype)) throw new FormatError(path, `tensor '${name}': ${t.dtype} [${t.shape.join(", ")}] needs ${n * itemsize(t.dtype)} bytes, data has ${t.data.byteLength}`);
    return { name, bytes: bytesOf(t), padded: padded[i]! };
  });
  return { header, tensors, alignment };
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
