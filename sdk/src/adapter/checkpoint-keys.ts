/**
 * Checkpoint key names vs the module names PEFT sees. transformers 5 renames some architectures' checkpoint keys
 * when it loads them (its `conversion_mapping.py`, keyed by config `model_type` or class name) and renames them back
 * when it saves: a ViT checkpoint holds `vit.encoder.layer.0.attention.attention.query.weight`, the loaded model (and so
 * PEFT's adapter) names that weight `vit.layers.0.attention.q_proj.weight`. A merge must find the base tensor under
 * its checkpoint key and write it back under that key, as `merge_and_unload().save_pretrained()` does.
 *
 * Only pure renamings are here (one key ↔ one key). Keys transformers fuses or splits on load (e.g. Mixtral's
 * per-expert `w1`/`w3` → one `gate_up_proj` parameter) are no nn.Linear PEFT can wrap as a module, so they never
 * name an adapter module.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** One renaming, written both ways: `load` turns a checkpoint key into the loaded name, `save` the reverse. */
interface Renaming {
  readonly load: readonly [RegExp, string];
  readonly save: readonly [RegExp, string];
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A literal renaming `from` (checkpoint) ↔ `to` (loaded), anchored at the key's start when `anchored`. */
function rename(from: string, to: string, anchored = false): Renaming {
  const re = (s: string): RegExp => new RegExp(`${anchored ? "^" : ""}${escape(s)}`);
  return { load: [re(from), to], save: [re(to), from] };
}

/** transformers' `ViTModel` mapping (conversion_mapping.py), which it also uses for DeiT, ViT-MAE, ViT-MSN and others. */
const VIT_MODEL: readonly Renaming[] = [
  rename("encoder.layer.", "layers."),
  rename("attention.query", "q_proj"),
  rename("attention.key", "k_proj"),
  rename("attention.value", "v_proj"),
  rename("attention.output.dense", "attention.o_proj"),
  rename("intermediate.dense", "mlp.fc1"),
  rename("output.dense", "mlp.fc2"),
];

/**
 * By config `model_type`: the renamings transformers applies to that architecture's checkpoints. Each list is checked
 * against transformers itself by sdk/test/adapter/checkpoint-keys.test.ts (same keys both ways on a saved tiny model).
 */
const BY_MODEL_TYPE: Readonly<Record<string, readonly Renaming[]>> = {
  vit: VIT_MODEL,
  deit: VIT_MODEL,
  // GPTNeoXForCausalLM: the output head is saved as `embed_out`, loaded as `lm_head`.
  gpt_neox: [rename("embed_out.", "lm_head.", true)],
  // Mixtral's router moved from `block_sparse_moe` to `mlp` (the experts are fused parameters, see above).
  mixtral: [rename(".block_sparse_moe.", ".mlp.")],
};

/** The model types with a renaming table. */
export const RENAMED_MODEL_TYPES: readonly string[] = Object.keys(BY_MODEL_TYPE);

/**
 * transformers applies every matching renaming in order, each replacing the first occurrence of what it matched
 * (`WeightTransform.rename_source_key`); saving applies the reversed renamings in reverse order.
 */
function applyAll(key: string, steps: ReadonlyArray<readonly [RegExp, string]>): string {
  let k = key;
  for (const [re, to] of steps) {
    const m = re.exec(k);
    if (m) k = k.slice(0, m.index) + to + k.slice(m.index + m[0].length);
  }
  return k;
}

export interface CheckpointKeyMap {
  /** The config `model_type` whose table this is. */
  readonly modelType: string;
  /** The name transformers loads checkpoint key `key` under. */
  loadedName(key: string): string;
  /** The checkpoint key transformers saves loaded name `name` under. */
  savedName(name: string): string;
}

/** The renaming table for a base's config `model_type`, or undefined when transformers keeps its keys as saved. */
export function checkpointKeyMap(modelType: unknown): CheckpointKeyMap | undefined {
  if (typeof modelType !== "string") return undefined;
  const table = BY_MODEL_TYPE[modelType];
  if (!table) return undefined;
  const load = table.map((r) => r.load);
  const save = [...table].reverse().map((r) => r.save);
  return { modelType, loadedName: (key) => applyAll(key, load), savedName: (name) => applyAll(name, save) };
}

/**
 * The renaming table for the base whose weights lie in `folder`, from its `config.json`'s `model_type`. No config (a bare
 * weights file) or an unreadable one gives undefined: the keys are then taken as they are, which is all loraport did before.
 */
export async function baseCheckpointKeyMap(folder: string): Promise<CheckpointKeyMap | undefined> {
  const text = await readFile(join(folder, "config.json"), "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return checkpointKeyMap((JSON.parse(text) as { model_type?: unknown } | null)?.model_type);
  } catch {
    return undefined;
  }
}
