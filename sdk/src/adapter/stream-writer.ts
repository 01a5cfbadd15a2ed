/**
 * A safetensors file written a tensor at a time: the header is laid out from names, dtypes and shapes
 * alone (same order and bytes as `writeSafetensors` / Python `save_file`), then each tensor's bytes are
 * produced on demand and written at their offset. Writing tensor i overlaps producing tensor i+1 (and the
 * caller may read ahead through `prefetch`), so memory stays bounded by a few tensors whatever the file size.
 */
import { writeAll, writeFileAtomic } from "../formats/atomic-file.js";
import { FormatError } from "../errors.js";
import { bytesOf, itemsize, numel, type DType, type Tensor } from "../tensor/index.js";

/** safetensors' Dtype enum order; `save_file` sorts by it descending, then by name bytewise. */
const DTYPE_RANK: Readonly<Record<DType, number>> = {
  BOOL: 0, U8: 1, I8: 2, F8_E5M2: 3, F8_E4M3: 4, I16: 5, U16: 6, F16: 7, BF16: 8,
  I32: 9, U32: 10, F32: 11, F64: 12, I64: 13, U64: 14,
};

export interface PlannedTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/** Write `plan` to `path` atomically; `produce(name)` returns each tensor (dtype and shape must match the plan). */
export async function writeSafetensorsStreaming(
  path: string,
  plan: readonly PlannedTensor[],
  produce: (name: string) => Promise<Tensor>,
  metadata?: Readonly<Record<string, string>>,
  /** Called with the name after the one being produced, so its read can start early. */
  prefetch?: (name: string) => void,
  /** Called once a tensor's bytes are on their way to disk (its buffer may then be reused). */
  written?: (name: string) => void,
): Promise<void> {
  const ordered = [...plan].sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let offset = 0;
  for (const t of ordered) {
    const end = offset + numel(t.shape) * itemsize(t.dtype);
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  await writeFileAtomic(path, async (fh) => {
    let pos = await writeAll(fh, header, 0);
    let writing: Promise<number> | undefined;
    let writingName = "";
    for (const [i, p] of ordered.entries()) {
      const next = ordered[i + 1];
      if (next && prefetch) prefetch(next.name);
      const t = await produce(p.name);
      if (t.dtype !== p.dtype || t.shape.length !== p.shape.length || t.shape.some((d, k) => d !== p.shape[k])) {
        await writing?.catch(() => {});
        throw new FormatError(path, `tensor '${p.name}' came out ${t.dtype} [${t.shape.join(", ")}], planned ${p.dtype} [${p.shape.join(", ")}]`);
      }
      if (writing) {
        pos = await writing;
        written?.(writingName);
      }
      writing = writeAll(fh, bytesOf(t), pos);
      writingName = p.name;
    }
    if (writing) {
      await writing;
      written?.(writingName);
    }
  });
}
