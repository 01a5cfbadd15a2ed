/**
 * Tensors PEFT saves beside an adapter that change a base layer before the LoRA update applies, folded into
 * whole-tensor replacements, as PEFT's load + `merge_and_unload` does:
 * - `save_embedding_layers` (auto when an embedding is a LoRA target): `<emb>.base_layer.weight` is loaded
 *   into the base layer, then the embedding's LoRA merges on top: replacement = saved + ΔW.
 * - `trainable_token_indices`: `<emb>.token_adapter.trainable_tokens_delta` holds replacement rows
 *   (`index_copy`, not a delta) for the listed token ids: replacement = base with those rows.
 * The result has those modules as saved-whole tensors, which a merge writes in place of the base's.
 */
import { AdapterError, ShapeMismatchError } from "../errors.js";
import type { TensorSource } from "../formats/safetensors/reader.js";
import { fromFloat32, toFloat32, type Tensor } from "../tensor/index.js";
import type { LoraAdapter, LoraModule } from "./adapter.js";
import { resolveModule } from "./config.js";
import { mergeWeight } from "./math.js";

export const TOKENS_SUFFIX = ".token_adapter.trainable_tokens_delta";

/** Whether the adapter has tensors that `foldSavedLayers` must resolve before a merge. */
export function hasSavedLayers(adapter: LoraAdapter): boolean {
  for (const key of adapter.extraTensors.keys()) {
    if (key.endsWith(TOKENS_SUFFIX)) return true;
    if (key.endsWith(".base_layer.weight") && adapter.modules.has(key.slice(0, -".base_layer.weight".length))) return true;
  }
  return false;
}

/** The adapter with saved embedding layers and trainable tokens folded into replacements of the base's tensors. */
export async function foldSavedLayers(adapter: LoraAdapter, base: Pick<TensorSource, "entry" | "read">): Promise<LoraAdapter> {
  if (!hasSavedLayers(adapter)) return adapter;
  const modules = new Map<string, LoraModule>(adapter.modules);
  const extraTensors = new Map<string, Tensor>(adapter.extraTensors);
  for (const [key, saved] of adapter.extraTensors) {
    if (key.endsWith(".base_layer.weight")) {
      const module = key.slice(0, -".base_layer.weight".length);
      const m = modules.get(module);
      if (!m) continue;
      // PEFT loads the saved weight into the base layer; merging adds the module's ΔW (or applies DoRA) to it.
      extraTensors.set(key, mergeWeight(saved, m, resolveModule(adapter.config, module).scaling, { module }));
      modules.delete(module);
    } else if (key.endsWith(TOKENS_SUFFIX)) {
      const module = key.slice(0, -TOKENS_SUFFIX.length);
      if (modules.has(module)) throw new AdapterError(`${key}: ${module} has both LoRA and trainable tokens, which PEFT does not allow on one layer`);
      const indices = tokenIndices(adapter.config.trainable_token_indices, module, key);
      const name = findBaseTensor(base, `${module}.weight`);
      if (!name) throw new ShapeMismatchError(key, `trainable tokens need the base embedding '${module}.weight' (nor a suffix of it), and the base has none`);
      const weight = await base.read(name);
      const [vocab, dim] = weight.shape as [number, number];
      if (weight.shape.length !== 2) throw new ShapeMismatchError(key, `base '${name}' has shape [${weight.shape.join(", ")}]; trainable tokens need a 2-D embedding`);
      if (saved.shape.length !== 2 || saved.shape[0] !== indices.length || saved.shape[1] !== dim) {
        throw new ShapeMismatchError(key, `trainable_tokens_delta has shape [${saved.shape.join(", ")}] but ${indices.length} token ids of an embedding of width ${dim} need [${indices.length}, ${dim}]`, [indices.length, dim], saved.shape);
      }
      const bad = indices.find((i) => i >= vocab);
      if (bad !== undefined) throw new AdapterError(`trainable_token_indices: token id ${bad} is outside the base embedding '${name}' (${vocab} rows)`);
      const W = toFloat32(weight, true);
      const rows = toFloat32(saved);
      // index_copy in index-list order: a repeated id ends with its last row, as in torch.
      for (const [j, id] of indices.entries()) W.set(rows.subarray(j * dim, (j + 1) * dim), id * dim);
      extraTensors.delete(key);
      extraTensors.set(`${module}.weight`, fromFloat32(W, weight.dtype, weight.shape));
    }
  }
  return { config: adapter.config, modules, extraTensors };
}

/** The token ids for one embedding: a list applies to the input embedding, a dict names modules (suffix match, as PEFT). */
export function tokenIndices(raw: unknown, module: string, key: string): number[] {
  let list: unknown;
  if (Array.isArray(raw)) list = raw;
  else if (raw !== null && typeof raw === "object") {
    const hit = Object.entries(raw as Record<string, unknown>).find(([k]) => module === k || module.endsWith(`.${k}`));
    if (!hit) throw new AdapterError(`${key}: trainable_token_indices names no entry for ${module} (keys: ${Object.keys(raw).join(", ")})`);
    list = hit[1];
  } else {
    throw new AdapterError(`${key}: the adapter saves trainable tokens but its config has no trainable_token_indices`);
  }
  if (!Array.isArray(list) || list.some((i) => !Number.isSafeInteger(i) || (i as number) < 0)) {
    throw new AdapterError(`trainable_token_indices for ${module}: expected a list of non-negative token ids, got ${JSON.stringify(list)}`);
  }
  return list as number[];
}

/** Exact name, or with leading components stripped (checkpoints differ in prefixes such as `model.`). */
function findBaseTensor(base: Pick<TensorSource, "entry">, name: string): string | undefined {
  if (base.entry(name)) return name;
  const parts = name.split(".");
  for (let i = 1; i < parts.length - 1; i++) {
    const cand = parts.slice(i).join(".");
    if (base.entry(cand)) return cand;
  }
  return undefined;
}
