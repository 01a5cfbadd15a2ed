/**
 * PEFT's task-tensor merge rules (peft/utils/merge_utils.py) over equally sized F32 tensors: task
 * arithmetic, magnitude pruning, TIES (sign election + disjoint mean) and DARE (random drop + rescale).
 * Arithmetic is rounded to F32 at each step in torch's order, so results agree with PEFT to F32 rounding.
 */
import { ArgumentError } from "../../errors.js";
import type { TorchCpuGenerator } from "./torch-generator.js";

export type MajoritySignMethod = "total" | "frequency";

/** PEFT's `magnitude_based_pruning`: keep the k = ⌊density·n⌋ largest |values| (ties: lowest index first). */
export function pruneByMagnitude(t: Float32Array, density: number): Float32Array {
  if (density >= 1) return t;
  const n = t.length;
  const k = Math.trunc(density * n);
  const out = new Float32Array(n);
  if (k <= 0) return out;
  const abs = new Float32Array(n);
  for (let i = 0; i < n; i++) abs[i] = Math.abs(t[i]!);
  const sorted = abs.slice().sort();
  const threshold = sorted[n - k]!;
  let greater = 0;
  for (let i = 0; i < n; i++) if (abs[i]! > threshold) greater++;
  // Values equal to the threshold fill the remaining places; torch's topk leaves that choice open.
  let equalLeft = k - greater;
  for (let i = 0; i < n; i++) {
    const a = abs[i]!;
    if (a > threshold) out[i] = t[i]!;
    else if (a === threshold && equalLeft > 0) {
      out[i] = t[i]!;
      equalLeft--;
    }
  }
  return out;
}

/** PEFT's `random_pruning` with rescale: t·mask / density, the mask drawn from `generator` (torch.bernoulli). */
export function pruneAtRandom(t: Float32Array, density: number, generator: TorchCpuGenerator): Float32Array {
  if (density >= 1) return t;
  const mask = generator.bernoulliMask(t.length, density);
  const d = Math.fround(density);
  const out = new Float32Array(t.length);
  for (let i = 0; i < t.length; i++) out[i] = mask[i] ? Math.fround(t[i]! / d) : 0;
  return out;
}

/** Σ wᵢ·tᵢ (`task_arithmetic`); weights are rounded to F32 as `torch.tensor(weights)` does. */
export function taskArithmetic(tensors: readonly Float32Array[], weights: readonly number[]): Float32Array {
  const w = Float32Array.from(weights);
  const n = tensors[0]!.length;
  const out = new Float32Array(n);
  for (const [i, t] of tensors.entries()) {
    const wi = w[i]!;
    for (let j = 0; j < n; j++) out[j] = out[j]! + Math.fround(t[j]! * wi);
  }
  return out;
}

/**
 * TIES' sign election and disjoint merge on already pruned tensors: the majority sign per entry comes from
 * the UNWEIGHTED tensors (sum for `total`, count of signs for `frequency`; ties go to +), then the weighted
 * entries agreeing with it are averaged over how many agree.
 */
export function electAndDisjointMerge(tensors: readonly Float32Array[], weights: readonly number[], method: MajoritySignMethod): Float32Array {
  const w = Float32Array.from(weights);
  const n = tensors[0]!.length;
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    let magnitude = 0;
    for (const t of tensors) magnitude = method === "total" ? Math.fround(magnitude + t[j]!) : magnitude + Math.sign(t[j]!);
    const majority = magnitude >= 0 ? 1 : -1;
    let sum = 0;
    let count = 0;
    for (const [i, t] of tensors.entries()) {
      if (Math.sign(t[j]!) !== majority) continue;
      sum = Math.fround(sum + Math.fround(t[j]! * w[i]!));
      count++;
    }
    out[j] = Math.fround(sum / Math.max(count, 1));
  }
  return out;
}

export type MergeRule = "task_arithmetic" | "magnitude_prune" | "ties" | "dare_linear" | "dare_ties";

export interface MergeRuleOptions {
  readonly density?: number | undefined;
  readonly majoritySignMethod?: MajoritySignMethod | undefined;
  /** DARE's mask source; draws happen tensor by tensor in the order given, as in PEFT. */
  readonly generator?: TorchCpuGenerator | undefined;
}

/** One of PEFT's merge functions by name, over one module's task tensors. */
export function applyMergeRule(rule: MergeRule, tensors: readonly Float32Array[], weights: readonly number[], options: MergeRuleOptions): Float32Array {
  const density = options.density ?? 1;
  const sign = options.majoritySignMethod ?? "total";
  switch (rule) {
    case "task_arithmetic":
      return taskArithmetic(tensors, weights);
    case "magnitude_prune":
      return taskArithmetic(tensors.map((t) => pruneByMagnitude(t, density)), weights);
    case "ties":
      return electAndDisjointMerge(tensors.map((t) => pruneByMagnitude(t, density)), weights, sign);
    case "dare_linear":
    case "dare_ties": {
      const generator = options.generator;
      if (!generator) throw new ArgumentError("seed", `${rule} draws random masks and needs a generator (seed)`);
      const pruned = tensors.map((t) => pruneAtRandom(t, density, generator));
      return rule === "dare_linear" ? taskArithmetic(pruned, weights) : electAndDisjointMerge(pruned, weights, sign);
    }
  }
}
