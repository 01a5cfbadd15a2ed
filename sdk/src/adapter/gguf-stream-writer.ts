/**
 * A GGUF file written a tensor at a time: the header is laid out from names, dtypes and shapes alone (the same
 * bytes `writeGguf` writes for the same input), then each tensor is produced on demand and written at its
 * aligned offset. Memory stays bounded by one tensor whatever the model's size, so a merge streams straight
 * into a base GGUF. Written to a temp file and renamed (atomic).
 */
import { FormatError } from "../errors.js";
import { writeAll, writeFileAtomic } from "../formats/atomic-file.js";
import type { GgufValue } from "../formats/gguf/index.js";
import { layoutGgufHeader } from "../formats/gguf/writer.js";
import { bytesOf, type Tensor } from "../tensor/index.js";
import type { PlannedTensor } from "./stream-writer.js";

/** Write `plan` to `path` atomically; `produce(name)` returns each tensor (dtype and shape must match the plan). */
export async function writeGgufStreaming(
  path: string,
  metadata: Iterable<readonly [string, GgufValue]>,
  plan: readonly PlannedTensor[],
  produce: (name: string) => Promise<Tensor>,
): Promise<void> {
  const { header, padded, alignment } = layoutGgufHeader(path, metadata, plan);

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
