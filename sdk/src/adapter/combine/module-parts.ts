/** One module's contributions from the adapters that adapt it, checked to describe the same base layer. */
import { AdapterError, UnsupportedFeatureError } from "../../errors.js";
import type { LoraAdapter, LoraModule } from "../adapter.js";
import { moduleDims } from "../adapter.js";
import { resolveModule } from "../config.js";

export interface ModulePart {
  /** Index of the adapter in the caller's list (its weight). */
  readonly index: number;
  readonly module: LoraModule;
  readonly scaling: number;
  readonly r: number;
}

export function moduleParts(method: string, adapters: readonly LoraAdapter[], name: string): ModulePart[] {
  const parts: ModulePart[] = [];
  for (const [index, ad] of adapters.entries()) {
    const m = ad.modules.get(name);
    if (!m) continue;
    if (m.magnitude) throw new UnsupportedFeatureError("use_dora", `${method}: ${name}: DoRA adapters cannot be combined (PEFT's add_weighted_adapter has no DoRA rule)`);
    if (m.bBias) throw new UnsupportedFeatureError("lora_bias", `${method}: ${name}: lora_B.bias cannot be combined`);
    const first = parts[0]?.module;
    if (first) {
      const a = moduleDims(first);
      const b = moduleDims(m);
      const sameShape = first.A.shape.slice(1).join() === m.A.shape.slice(1).join();
      if (first.kind !== m.kind || a.in !== b.in || a.out !== b.out || !sameShape) {
        throw new AdapterError(`${method}: ${name}: adapters disagree on the module (${first.kind} ${a.out}×${a.in} vs ${m.kind} ${b.out}×${b.in})`);
      }
    }
    const { scaling, r } = resolveModule(ad.config, name);
    parts.push({ index, module: m, scaling, r });
  }
  return parts;
}

/** PEFT's rank of an adapter for allocation: r, or the largest of r and the rank_pattern values. */
export function allocationRank(adapter: LoraAdapter): number {
  return Math.max(adapter.config.r, ...Object.values(adapter.config.rank_pattern));
}
