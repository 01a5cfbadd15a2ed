/**
 * PEFT's `svd`, `ties_svd`, `dare_linear_svd`, `dare_ties_svd` and `magnitude_prune_svd`: the rule runs on
 * each adapter's full ΔWᵢ (scaling included, in the base's stored layout, as `get_delta_weight` returns it),
 * the result is truncated by SVD to the new rank: B' = U·S, A' = Vh (scaling 1), optionally clamped at the
 * `svdClamp` quantile of all their entries. Plain `svd` never forms ΔW (its sum is a thin product).
 */
import { ArgumentError, AdapterError } from "../../errors.js";
import { toFloat32 } from "../../tensor/index.js";
import type { LoraAdapter, LoraModule } from "../adapter.js";
import { isConvKind, moduleDims } from "../adapter.js";
import { deltaWeight, transpose2d } from "../math.js";
import { checkWeights, combinedConfig, combinedExtraTensors, f32Tensor } from "./combined-config.js";
import { applyMergeRule, type MergeRule, type MergeRuleOptions } from "./merge-rules.js";
import { allocationRank, moduleParts, type ModulePart } from "./module-parts.js";
import { truncatedSvd, truncatedSvdOfProduct, type TruncatedSvd } from "./svd.js";

export type SvdMethod = "svd" | "ties_svd" | "dare_linear_svd" | "dare_ties_svd" | "magnitude_prune_svd";

const RULE: Record<SvdMethod, MergeRule> = {
  svd: "task_arithmetic",
  ties_svd: "ties",
  dare_linear_svd: "dare_linear",
  dare_ties_svd: "dare_ties",
  magnitude_prune_svd: "magnitude_prune",
};

export interface SvdOptions extends MergeRuleOptions {
  /** New rank; default the largest adapter rank (PEFT: max of r and rank_pattern values). */
  readonly svdRank?: number | undefined;
  /** Quantile in [0, 1] at which U·S and Vh entries are clamped (PEFT's `svd_clamp`); default none. */
  readonly svdClamp?: number | undefined;
}

export function combineBySvd(method: SvdMethod, adapters: readonly LoraAdapter[], weights: readonly number[], names: readonly string[], options: SvdOptions): LoraAdapter {
  checkWeights(method, adapters, weights);
  const k = options.svdRank ?? Math.max(...adapters.map(allocationRank));
  if (!Number.isSafeInteger(k) || k < 1) throw new ArgumentError("svdRank", `a positive integer, got ${k}`);
  const clamp = options.svdClamp;
  if (clamp !== undefined && !(clamp >= 0 && clamp <= 1)) throw new ArgumentError("svdClamp", `a quantile in [0, 1], got ${clamp}`);
  const modules = new Map<string, LoraModule>();
  const ranks = new Map<string, number>();
  for (const name of names) {
    const parts = moduleParts(method, adapters, name);
    if (parts.length === 0) continue;
    const first = parts[0]!.module;
    const { in: nIn, out } = moduleDims(first);
    if (k > Math.min(out, nIn)) throw new ArgumentError("svdRank", `${k} exceeds ${name}'s smaller dimension (${out}×${nIn}); PEFT cannot truncate to it either`);
    const svd = method === "svd" ? svdOfWeightedSum(parts, weights, out, nIn, k) : svdOfMergedDelta(RULE[method], parts, weights, out, nIn, k, options, name);
    const { B, A } = clamp === undefined ? { B: Float32Array.from(svd.US), A: Float32Array.from(svd.Vh) } : clampFactors(svd.US, svd.Vh, clamp);
    const Ashape = isConvKind(first.kind) ? [k, ...first.A.shape.slice(1)] : [k, nIn];
    const Bshape = isConvKind(first.kind) ? [out, k, ...first.A.shape.slice(2).map(() => 1)] : [out, k];
    modules.set(name, { kind: first.kind, A: f32Tensor(Ashape, A), B: f32Tensor(Bshape, B) });
    ranks.set(name, k);
  }
  if (modules.size === 0) throw new AdapterError(`${method}: the adapters adapt no modules`);
  return { config: combinedConfig(adapters, ranks), modules, extraTensors: combinedExtraTensors(adapters) };
}

/** Σ wᵢ·sᵢ·Bᵢ·Aᵢ as the thin product [w₁s₁B₁ | w₂s₂B₂ | …]·[A₁; A₂; …]. */
function svdOfWeightedSum(parts: readonly ModulePart[], weights: readonly number[], out: number, nIn: number, k: number): TruncatedSvd {
  const rTotal = parts.reduce((s, p) => s + p.r, 0);
  const L = new Float64Array(out * rTotal);
  const R = new Float64Array(rTotal * nIn);
  let off = 0;
  for (const p of parts) {
    // torch.tensor(weights) is float32.
    const c = Math.fround(weights[p.index]!) * p.scaling;
    const A = toFloat32(p.module.A);
    const B = toFloat32(p.module.B);
    for (let i = 0; i < out; i++) for (let a = 0; a < p.r; a++) L[i * rTotal + off + a] = B[i * p.r + a]! * c;
    R.set(A, off * nIn);
    off += p.r;
  }
  assertAllFinite(L, "svd: a lora_B");
  assertAllFinite(R, "svd: a lora_A");
  return truncatedSvdOfProduct(L, R, out, rTotal, nIn, k);
}

/** The rule over the full ΔWᵢ (PEFT's draw order: adapter by adapter, row-major in the stored layout), then SVD in [out, in]. */
function svdOfMergedDelta(rule: MergeRule, parts: readonly ModulePart[], weights: readonly number[], out: number, nIn: number, k: number, options: MergeRuleOptions, name: string): TruncatedSvd {
  const deltas = parts.map((p) => toFloat32(deltaWeight(p.module, p.scaling)));
  let merged = applyMergeRule(rule, deltas, parts.map((p) => weights[p.index]!), options);
  const kind = parts[0]!.module.kind;
  // Conv1D and Embedding store ΔW as [in, out]; PEFT transposes before the SVD.
  if (kind === "conv1d" || kind === "embedding") merged = transpose2d(merged, nIn, out);
  assertAllFinite(merged, name);
  return truncatedSvd(merged, out, nIn, k);
}

/**
 * PEFT's `svd_clamp`: hi = torch.quantile(cat(U·S, Vh), q) with linear interpolation, then both clamped to
 * [−hi, hi]. The quantile sees signed entries, so it depends on the singular vectors' signs, which SVD leaves
 * free: results equal PEFT's once signs agree.
 */
export function clampFactors(US: ArrayLike<number>, Vh: ArrayLike<number>, q: number): { B: Float32Array; A: Float32Array } {
  const B = Float32Array.from(US);
  const A = Float32Array.from(Vh);
  const all = new Float32Array(B.length + A.length);
  all.set(B);
  all.set(A, B.length);
  all.sort();
  const pos = q * (all.length - 1);
  const lo = Math.floor(pos);
  const hiIdx = Math.min(lo + 1, all.length - 1);
  const frac = pos - lo;
  const hi = Math.fround(all[lo]! + (all[hiIdx]! - all[lo]!) * frac);
  const low = -hi;
  // torch.clamp(x, min, max) = min(max(x, min), max), also when min > max.
  const clampTo = (x: number): number => Math.min(Math.max(x, low), hi);
  for (let i = 0; i < B.length; i++) B[i] = clampTo(B[i]!);
  for (let i = 0; i < A.length; i++) A[i] = clampTo(A[i]!);
  return { B, A };
}

function assertAllFinite(x: ArrayLike<number>, module: string): void {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i]!)) throw new AdapterError(`${module}: non-finite values; adapters with NaN or ±Inf cannot be combined`, { code: "E_NONFINITE" });
}
