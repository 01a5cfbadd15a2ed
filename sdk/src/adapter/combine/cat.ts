/**
 * PEFT's `cat`, exact: A' = rows-concat(w_i·s_i·A_i), B' = cols-concat(B_i), so ΔW' = Σ w_i·ΔW_i; the result
 * has rank Σ r_i and alpha = rank (scaling 1), like `add_weighted_adapter`.
 */
import { AdapterError, UnsupportedFeatureError } from "../../errors.js";
import { toFloat32 } from "../../tensor/index.js";
import type { LoraAdapter, LoraModule } from "../adapter.js";
import { isConvKind, moduleDims } from "../adapter.js";
import { resolveModule } from "../config.js";
import { checkWeights, combinedConfig, combinedExtraTensors, f32Tensor, moduleNames } from "./combined-config.js";

export function catAdapters(adapters: readonly LoraAdapter[], weights: readonly number[] = adapters.map(() => 1)): LoraAdapter {
  checkWeights("cat", adapters, weights);
  const names = moduleNames(adapters);
  const modules = new Map<string, LoraModule>();
  const ranks = new Map<string, number>();
  for (const name of names) {
    const parts: { A: Float32Array; B: Float32Array; r: number }[] = [];
    let kind: LoraModule["kind"] | undefined;
    let dims: { in: number; out: number } | undefined;
    let aShape: readonly number[] = [];
    for (const [i, ad] of adapters.entries()) {
      const m = ad.modules.get(name);
      if (!m) continue;
      if (m.magnitude) throw new UnsupportedFeatureError("use_dora", `cat: ${name}: DoRA adapters cannot be concatenated exactly`);
      if (m.bBias) throw new UnsupportedFeatureError("lora_bias", `cat: ${name}: lora_B.bias cannot be concatenated`);
      const d = moduleDims(m);
      if (kind && (kind !== m.kind || d.in !== dims!.in || d.out !== dims!.out)) {
        throw new AdapterError(`cat: ${name}: adapters disagree on the module (${kind} ${dims!.out}×${dims!.in} vs ${m.kind} ${d.out}×${d.in})`);
      }
      kind = m.kind;
      dims = d;
      aShape = m.A.shape;
      const { scaling, r } = resolveModule(ad.config, name);
      const c = Math.fround(weights[i]! * scaling);
      const A = toFloat32(m.A, true);
      for (let k = 0; k < A.length; k++) A[k] = Math.fround(A[k]! * c);
      parts.push({ A, B: toFloat32(m.B), r });
    }
    const rTotal = parts.reduce((s, p) => s + p.r, 0);
    const { in: nIn, out } = dims!;
    const A = new Float32Array(rTotal * nIn);
    const B = new Float32Array(out * rTotal);
    let off = 0;
    for (const p of parts) {
      A.set(p.A, off * nIn);
      for (let row = 0; row < out; row++) B.set(p.B.subarray(row * p.r, (row + 1) * p.r), row * rTotal + off);
      off += p.r;
    }
    const Ashape = [rTotal, ...aShape.slice(1)];
    const Bshape = isConvKind(kind!) ? [out, rTotal, ...aShape.slice(2).map(() => 1)] : [out, rTotal];
    modules.set(name, { kind: kind!, A: f32Tensor(Ashape, A), B: f32Tensor(Bshape, B) });
    ranks.set(name, rTotal);
  }
  return { config: combinedConfig(adapters, ranks), modules, extraTensors: combinedExtraTensors(adapters) };
}
