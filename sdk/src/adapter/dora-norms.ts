/**
 * The record that makes a DoRA merge undoable. DoRA's merge scales each output by m / ‖W + sBA‖, a norm of the base
 * weight that the merged weight no longer holds; PEFT caches it in memory between `merge` and `unmerge`, so a merged
 * folder saved by PEFT cannot be unmerged. `loraport merge` writes the norms it divided by into a small safetensors
 * file beside the merged weights, and `merge --unmerge` reads them back:
 * - folder output: `<out>/loraport/dora-norms.safetensors` (a subfolder: transformers loads only the weights its
 *   index or model.safetensors names, and vLLM globs only the top level's *.safetensors);
 * - single-file output: `<out>.dora-norms` (the same format; no .safetensors suffix for a folder glob to pick up).
 * One F32 `[out]` tensor per merged DoRA weight, under the weight's checkpoint name. The metadata holds a fingerprint of
 * the DoRA modules it was written for and a SHA-256 of each merged weight's bytes, so an unmerge with another adapter, or
 * of weights changed since, is refused instead of computed wrongly. Merges and unmerges without DoRA modules carry the
 * base's record into their output (mergeModel), so a LoRA stacked on a DoRA merge and taken off again leaves it undoable.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UnsupportedFeatureError } from "../errors.js";
import { readSafetensors, writeSafetensors } from "../formats/safetensors/index.js";
import { toFloat32, type Tensor } from "../tensor/index.js";
import type { LoraModule } from "./adapter.js";

/** Where a folder output keeps the record, relative to the folder. */
export const DORA_NORMS_IN_FOLDER = join("loraport", "dora-norms.safetensors");
const FORMAT = "loraport-dora-norms";

/** The record's path for a merge output (or an unmerge's merged input) of `kind` at `path`. */
export function doraNormsPath(kind: "file" | "folder", path: string): string {
  return kind === "folder" ? join(path, DORA_NORMS_IN_FOLDER) : `${path}.dora-norms`;
}

/** One merged DoRA weight: its checkpoint name, the module, and the scaling it was merged with. */
export interface DoraWeight {
  readonly tensor: string;
  readonly module: string;
  readonly m: LoraModule;
  readonly scaling: number;
}

const bytesOf = (t: Tensor): Uint8Array => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/** SHA-256 of the DoRA modules' factors, magnitudes and scalings, in tensor-name order: which adapter a record belongs to. */
export function doraFingerprint(weights: readonly DoraWeight[]): string {
  const h = createHash("sha256");
  for (const w of [...weights].sort((a, b) => (a.tensor < b.tensor ? -1 : a.tensor > b.tensor ? 1 : 0))) {
    h.update(`${w.tensor}\0${w.module}\0${w.m.kind}\0${Math.fround(w.scaling)}\0`);
    for (const t of [w.m.A, w.m.B, w.m.magnitude!]) h.update(bytesOf({ ...t, data: toFloat32(t) }));
  }
  return h.digest("hex");
}

/** SHA-256 of a tensor's bytes as written (dtype and shape included). */
export function tensorDigest(t: Tensor): string {
  return createHash("sha256").update(`${t.dtype}[${t.shape.join(",")}]`).update(bytesOf(t)).digest("hex");
}

/** What a merge writes: the norms per merged weight, with the digest of the bytes it wrote for that weight. */
export async function writeDoraNorms(path: string, fingerprint: string, norms: ReadonlyMap<string, { norms: Float32Array; digest: string }>): Promise<void> {
  const metadata: Record<string, string> = { format: FORMAT, version: "1", adapter: fingerprint };
  const tensors = new Map<string, Tensor>();
  for (const [name, r] of norms) {
    tensors.set(name, { dtype: "F32", shape: [r.norms.length], data: r.norms });
    metadata[`sha256:${name}`] = r.digest;
  }
  await writeSafetensors(path, tensors, metadata);
}

export interface DoraNormsRecord {
  readonly path: string;
  /** The recorded norms of `tensor`, after checking that `merged` is the weight that merge wrote. */
  normsFor(tensor: string, merged: Tensor, module: string): Float32Array;
}

/**
 * The record for unmerging `weights` from the merged model whose record path is `path`; refused (naming the file) when it
 * is missing, is not such a record, or was written for other DoRA modules.
 */
export async function readDoraNorms(path: string, weights: readonly DoraWeight[]): Promise<DoraNormsRecord> {
  const first = weights[0]!;
  const more = weights.length > 1 ? ` and ${weights.length - 1} more modules` : "";
  const refuse = (why: string): never => {
    throw new UnsupportedFeatureError("use_dora", `unmerge: ${first.module}${more} use${weights.length > 1 ? "" : "s"} DoRA, whose unmerge needs the per-output weight norms the merge divided by, which loraport merge records in ${path}; ${why}`);
  };
  if (!existsSync(path)) refuse("that file is missing (a model merged by PEFT or another tool has no record: PEFT keeps the norms in memory only; unmerge into the original base is then impossible, merge into a copy of the base instead)");
  const { tensors, metadata } = await readSafetensors(path).catch((e: unknown) => refuse(`it cannot be read (${(e as Error).message})`));
  if (metadata["format"] !== FORMAT) refuse(`it is not a loraport DoRA norms record (metadata format '${metadata["format"] ?? ""}', expected '${FORMAT}')`);
  if (metadata["adapter"] !== doraFingerprint(weights)) refuse("it was written for a different DoRA adapter (its factors, magnitudes or scaling differ from this one's)");
  return {
    path,
    normsFor(tensor, merged, module) {
      const t = tensors.get(tensor);
      if (!t) return refuse(`it has no norms for '${tensor}' (module ${module})`);
      if (metadata[`sha256:${tensor}`] !== tensorDigest(merged)) refuse(`'${tensor}' (module ${module}) is not the weight that merge wrote (its bytes changed since)`);
      return toFloat32(t);
    },
  };
}
