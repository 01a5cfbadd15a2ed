/**
 * PEFT's `linear`, `ties`, `dare_linear`, `dare_ties` and `magnitude_prune`: the rule runs on the factors,
 * As and Bs separately, with A weighted by sign(wᵢsᵢ)·√|wᵢsᵢ| and B by √|wᵢsᵢ| (so a plain sum of
 * products would come out as Σ wᵢΔWᵢ only for one adapter — PEFT's approximation, reproduced as is).
 * Ranks must be equal; the result has that rank with scaling 1.
 */
import { AdapterError, ArgumentError } from "../../errors.js";
import { toFloat32 } from "../../tensor/index.js";
import type { LoraAdapter, LoraModule } from "../adapter.js";
import { checkWeights, combinedConfig, combinedExtraTensors, f32Tensor, moduleNames } from "./combined-config.js";
import { applyMergeRule, type MergeRule, type MergeRuleOptions } from "./merge-rules.js";
import { allocationRank, moduleParts } from "./module-parts.js";

export type FactorMethod = "linear" | "ties" | "dare_linear" | "dare_ties" | "magnitude_prune";

const RULE: Record<FactorMethod, MergeRule> = {
  linear: "task_arithmetic",
  ties: "ties",
  dare_linear: "dare_linear",
  dare_ties: "dare_ties",
  magnitude_prune: "magnitude_prune",
};

export function combineFactors(method: FactorMethod, adapters: readonly LoraAdapter[], weights: readonly number[], names: readonly string[], options: MergeRuleOptions): LoraAdapter {
  checkWeights(method, adapters, weights);
  const ranks = adapters.map(allocationRank);
  if (new Set(ranks).size !== 1) {
    throw new AdapterError(`${method}: all adapters must have the same rank (PEFT's rule for ${method}), got ${ranks.join(", ")}; use cat or an svd method for different ranks`);
  }
  const modules = new Map<string, LoraModule>();
  const moduleRanks = new Map<string, number>();
  for (const name of names) {
    const parts = moduleParts(method, adapters, name);
    if (parts.length === 0) continue;
    for (const p of parts) {
      if (p.r !== ranks[0]) throw new AdapterError(`${method}: ${name}: adapter ${p.index} has rank ${p.r} here (rank_pattern) but ${ranks[0]} overall; ${method} needs one rank`);
    }
    const wA: number[] = [];
    const wB: number[] = [];
    for (const p of parts) {
      const ws = weights[p.index]! * p.scaling;
      wA.push(Math.sqrt(Math.abs(ws)) * (ws >= 0 ? 1 : -1));
      wB.push(Math.sqrt(Math.abs(ws)));
    }
    // PEFT draws DARE masks for every A first, then every B.
    const A = applyMergeRule(RULE[method], parts.map((p) => toFloat32(p.module.A)), wA, options);
    const B = applyMergeRule(RULE[method], parts.map((p) => toFloat32(p.module.B)), wB, options);
    const first = parts[0]!.module;
    modules.set(name, { kind: first.kind, A: f32Tensor(first.A.shape, A), B: f32Tensor(first.B.shape, B) });
    moduleRanks.set(name, ranks[0]!);
  }
  if (modules.size === 0) throw new AdapterError(`${method}: the adapters adapt no modules`);
  return { config: combinedConfig(adapters, moduleRanks), modules, extraTensors: combinedExtraTensors(adapters) };
}

/** Module order for DARE's draws: the caller's (PEFT follows the model's named_modules), else first-seen. */
export function orderedModuleNames(adapters: readonly LoraAdapter[], order: readonly string[] | undefined): string[] {
  const names = moduleNames(adapters);
  if (!order) return names;
  const known = new Set(names);
  const ordered = order.filter((n) => known.has(n));
  const listed = new Set(ordered);
  const missing = names.filter((n) => !listed.has(n));
  if (missing.length > 0) throw new ArgumentError("moduleOrder", `lacks ${missing.length} adapted module(s), e.g. ${missing[0]}`);
  return ordered;
}
