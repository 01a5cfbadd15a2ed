/**
 * Combining adapters as PEFT's `add_weighted_adapter` does, for all eleven combination types:
 * - `cat` (exact: ΔW' = Σ wᵢΔWᵢ, rank Σ rᵢ) — combine/cat.ts;
 * - `linear`, `ties`, `dare_linear`, `dare_ties`, `magnitude_prune` on the factors (equal ranks) — combine/factor-methods.ts;
 * - `svd`, `ties_svd`, `dare_linear_svd`, `dare_ties_svd`, `magnitude_prune_svd` on ΔW, SVD-truncated — combine/svd-methods.ts.
 * The result always has scaling 1 (alpha = rank).
 */
import { ArgumentError } from "../errors.js";
import type { LoraAdapter } from "./adapter.js";
import { catAdapters } from "./combine/cat.js";
import { combineFactors, orderedModuleNames, type FactorMethod } from "./combine/factor-methods.js";
import { allocationRank } from "./combine/module-parts.js";
import { peftInitDraws } from "./combine/peft-init-draws.js";
import type { MajoritySignMethod } from "./combine/merge-rules.js";
import { combineBySvd, type SvdMethod } from "./combine/svd-methods.js";
import { TorchCpuGenerator } from "./combine/torch-generator.js";

export { catAdapters } from "./combine/cat.js";
export { clampFactors } from "./combine/svd-methods.js";
export { TorchCpuGenerator } from "./combine/torch-generator.js";
export { truncatedSvd, truncatedSvdOfProduct, type TruncatedSvd } from "./combine/svd.js";
export type { MajoritySignMethod } from "./combine/merge-rules.js";

export const COMBINATION_METHODS = [
  "linear",
  "cat",
  "svd",
  "ties",
  "ties_svd",
  "dare_linear",
  "dare_ties",
  "dare_linear_svd",
  "dare_ties_svd",
  "magnitude_prune",
  "magnitude_prune_svd",
] as const;
export type CombinationMethod = (typeof COMBINATION_METHODS)[number];

const USES_DENSITY = new Set<CombinationMethod>(["ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd"]);
const RANDOM = new Set<CombinationMethod>(["dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd"]);

export interface CombineOptions {
  readonly method: CombinationMethod;
  /** One per adapter, any sign; default 1 each. */
  readonly weights?: readonly number[];
  /** Fraction of entries kept, in [0, 1] ((0, 1] for DARE); required by the ties / dare / magnitude_prune methods. */
  readonly density?: number;
  /** TIES sign election: `total` (sign of the sum, default) or `frequency` (sign of the count). */
  readonly majoritySignMethod?: MajoritySignMethod;
  /** svd methods: the new rank (default the largest adapter rank). */
  readonly svdRank?: number;
  /** svd methods: clamp quantile in [0, 1]. */
  readonly svdClamp?: number;
  /**
   * DARE: the masks come from torch's CPU generator seeded with `torch.manual_seed(seed)`, drawn as PEFT
   * draws them (module by module in `moduleOrder`). Required by the dare methods.
   */
  readonly seed?: number;
  /**
   * DARE: where `torch.manual_seed(seed)` stands. `add_weighted_adapter` (default): right before PEFT's call,
   * so the draws PEFT's initialisation of the new adapter's layers takes come first (modelled for Linear,
   * Conv1D, Conv2d and Embedding layers with init_lora_weights true/false). `masks`: the generator is in that
   * state when the first mask is drawn.
   */
  readonly seedAt?: "add_weighted_adapter" | "masks";
  /** DARE: module names in the base model's `named_modules()` order, which is PEFT's draw order; default the adapters' order. */
  readonly moduleOrder?: readonly string[];
}

/** Combine adapters of one base into one, as PEFT's `add_weighted_adapter(adapters, weights, combination_type=method, ...)`. */
export function combineAdapters(adapters: readonly LoraAdapter[], options: CombineOptions): LoraAdapter {
  const method = options.method;
  if (!(COMBINATION_METHODS as readonly string[]).includes(method)) throw new ArgumentError("method", `one of ${COMBINATION_METHODS.join(", ")}; got ${String(method)}`);
  const weights = options.weights ?? adapters.map(() => 1);
  const density = options.density;
  if (USES_DENSITY.has(method)) {
    if (density === undefined) throw new ArgumentError("density", `${method} needs a density (fraction of entries kept, 0..1)`);
    if (!(density >= 0 && density <= 1)) throw new ArgumentError("density", `a fraction in [0, 1], got ${density}`);
    if (RANDOM.has(method) && density === 0) throw new ArgumentError("density", `${method} rescales by 1/density, so density must be > 0`);
  } else if (density !== undefined) {
    throw new ArgumentError("density", `${method} does not prune; density applies to ties, dare and magnitude_prune methods`);
  }
  const sign = options.majoritySignMethod;
  if (sign !== undefined && sign !== "total" && sign !== "frequency") throw new ArgumentError("majoritySignMethod", `total or frequency, got ${String(sign)}`);
  if (!method.endsWith("svd") && (options.svdRank !== undefined || options.svdClamp !== undefined)) {
    throw new ArgumentError(options.svdRank !== undefined ? "svdRank" : "svdClamp", `applies to the svd methods only, not ${method}`);
  }
  let generator: TorchCpuGenerator | undefined;
  if (RANDOM.has(method) && density! < 1) {
    if (options.seed === undefined) throw new ArgumentError("seed", `${method} draws random masks; give a seed (torch.manual_seed value) to make them reproducible`);
    generator = new TorchCpuGenerator(options.seed);
  }
  // PEFT: a single adapter is always combined with `linear`.
  const effective: CombinationMethod = adapters.length === 1 ? "linear" : method;
  if (effective === "cat") return catAdapters(adapters, weights);
  const names = orderedModuleNames(adapters, options.moduleOrder);
  const seedAt = options.seedAt ?? "add_weighted_adapter";
  if (seedAt !== "add_weighted_adapter" && seedAt !== "masks") throw new ArgumentError("seedAt", `add_weighted_adapter or masks, got ${String(seedAt)}`);
  if (generator && seedAt === "add_weighted_adapter" && adapters.length > 0) {
    const newRank = effective.endsWith("svd") ? (options.svdRank ?? Math.max(...adapters.map(allocationRank))) : allocationRank(adapters[0]!);
    generator.skip(peftInitDraws(adapters, names, newRank));
  }
  const rule = { density, majoritySignMethod: sign, generator };
  if (effective.endsWith("svd")) return combineBySvd(effective as SvdMethod, adapters, weights, names, { ...rule, svdRank: options.svdRank, svdClamp: options.svdClamp });
  return combineFactors(effective as FactorMethod, adapters, weights, names, rule);
}
