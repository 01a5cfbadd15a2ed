/**
 * A GGUF file written a tensor at a time: the header is laid out from names, dtypes and shapes alone (the same
 * bytes `writeGguf` writes for the same input), then each tensor is produced on demand and written at its
 * aligned offset. Memory stays bounded by one tensor whatever the model's size, so a merge streams straight
 * into a base GGUF. Written to a temp file and renamed (atomic).
 */
import { FormatError } from "../errors.js";
import { writeAll, writeFileAtomic } from "../formats/atomic-file.js";
import { GGML_MAX_DIMS, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgufType, ggmlTypeOf } from "../formats/gguf/constants.js";
import { ByteBuilder, encodeValue } from "../formats/gguf/encode.js";
import { GGML_MAX_NAME, type GgufValue } from "../formats/gguf/index.js";
import { bytesOf, itemsize, numel, type Tensor } from "../tensor/index.js";
import type { PlannedTensor } from "./stream-writer.js";

/** Write `plan` to `path` atomically; `produce(name)` returns each tensor (dtype and shape must match the plan). */
export async function writeGgufStreaming(
  path: string,
  metadata: Iterable<readonly [string, GgufValue]>,
  plan: readonly PlannedTensor[],
  produce: (name: string) => Promise<Tensor>,
): Promise<void> {
  const b = new ByteBuilder();
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
  const header = b.bytes();

  await writeFileAtomic(path, async (fh) => {
    let pos = await writeAll(fh, header, 0);
    const pad = new Uint8Array(alignment);
    for (const [i, p] of plan.entries()) {
      const t = await produce(p.name);
      if (t.dtype !== p.dtype || t.shape.length !== p.shape.length || t.shape.some((d, k) => d !== p.shape[k])) {
        throw new FormatError(path, `tensor '${p.name}' came out ${t.dtype} [${t.shape.join(", ")}], planned ${p.dtype} [${p.shape.join(", ")}]`);
      }
      const bytes = bytesOf(t);
      pos = await writeAll(fh, bytes, pos);
      const rest = padded[i]! - bytes.byteLength;
      if (rest > 0) pos = await writeAll(fh, pad.subarray(0, rest), pos);
    }
  });
}
