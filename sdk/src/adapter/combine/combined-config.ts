/**
 * The config and extra tensors of a combined adapter, as PEFT's `add_weighted_adapter` derives them: the
 * first adapter's settings, rank = alpha (scaling 1), no rsLoRA. PEFT keeps `use_rslora` from the first
 * adapter, which scales its own combined factors by √r again; loraport writes scaling 1 so the factors mean
 * what PEFT computed them to mean.
 */
import { AdapterError } from "../../errors.js";
import type { Tensor } from "../../tensor/index.js";
import type { LoraAdapter } from "../adapter.js";
import { loraConfig, type LoraConfig } from "../config.js";

/** Config for combined modules; `ranks` are per module, patterns are written where a module's rank is not the largest. */
export function combinedConfig(adapters: readonly LoraAdapter[], ranks: ReadonlyMap<string, number>): LoraConfig {
  const rMax = Math.max(...ranks.values());
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const [name, r] of ranks) {
    if (r !== rMax) {
      rankPattern[`^${escapeRegex(name)}`] = r;
      alphaPattern[`^${escapeRegex(name)}`] = r;
    }
  }
  const first = adapters[0]!.config;
  const targets = [...new Set([...ranks.keys()].map((n) => n.split(".").pop()!))];
  return loraConfig({
    task_type: first.task_type,
    base_model_name_or_path: first.base_model_name_or_path,
    r: rMax,
    lora_alpha: rMax,
    target_modules: targets,
    fan_in_fan_out: first.fan_in_fan_out,
    modules_to_save: first.modules_to_save,
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
  });
}

/**
 * Tensors saved whole (modules_to_save heads, trained biases, saved embeddings): kept as they are. Two
 * adapters saving the same tensor with different values cannot both be right, so that is refused (PEFT
 * refuses two adapters with modules_to_save on one module); identical copies (e.g. the unchanged embedding
 * PEFT saves beside an embedding LoRA) are kept once.
 */
export function combinedExtraTensors(adapters: readonly LoraAdapter[]): Map<string, Tensor> {
  const extraTensors = new Map<string, Tensor>();
  const from = new Map<string, number>();
  for (const [i, ad] of adapters.entries()) {
    for (const [k, t] of ad.extraTensors) {
      const seen = extraTensors.get(k);
      if (!seen) {
        extraTensors.set(k, t);
        from.set(k, i);
      } else if (!sameTensor(seen, t)) {
        throw new AdapterError(`${k}: adapters ${from.get(k)} and ${i} both save this tensor whole, with different values; a combination cannot hold both (PEFT refuses modules_to_save on one module in two adapters)`);
      }
    }
  }
  return extraTensors;
}

function sameTensor(a: Tensor, b: Tensor): boolean {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join()) return false;
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** All module names, in first-seen order. */
export function moduleNames(adapters: readonly LoraAdapter[]): string[] {
  return [...new Set(adapters.flatMap((a) => [...a.modules.keys()]))];
}

export function checkWeights(method: string, adapters: readonly LoraAdapter[], weights: readonly number[]): void {
  if (adapters.length === 0) throw new AdapterError(`${method}: no adapters given`);
  if (weights.length !== adapters.length) throw new AdapterError(`${method}: ${adapters.length} adapters but ${weights.length} weights`);
  for (const [i, w] of weights.entries()) if (!Number.isFinite(w)) throw new AdapterError(`${method}: weights[${i}] is ${w}; expected a finite number`);
}

export function f32Tensor(shape: readonly number[], data: Float32Array): Tensor {
  return { dtype: "F32", shape: [...shape], data };
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
