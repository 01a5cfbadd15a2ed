/**
 * Per-module low-rank factors for runtimes that apply LoRA unmerged (the ONNX Runtime engine, training):
 * y = base(x) + x·Aᵀ·Bᵀ with the scaling already folded into B.
 */
import { UnsupportedFeatureError } from "../errors.js";
import { toFloat32 } from "../tensor/index.js";
import type { ConvKind, LoraAdapter, LoraModuleKind } from "./adapter.js";
import { isConvKind, moduleDims, moduleRank } from "./adapter.js";
import { resolveModule } from "./config.js";

export interface ModuleFactors {
  /** `[r, in]` row-major: PEFT's lora_A as stored, for every kind (embeddings: in = num_embeddings). */
  readonly A: Float32Array;
  /** `[out, r]` row-major: PEFT's lora_B times the module's scaling (α/r or α/√r, patterns applied). */
  readonly B: Float32Array;
  readonly r: number;
  readonly in: number;
  readonly out: number;
  /**
   * True for transformers Conv1D modules (GPT-2 c_attn...): the BASE weight is stored `[in, out]`.
   * A and B are NOT transposed for these: y = x·Aᵀ·Bᵀ holds as for Linear, and ΔW in the base's stored
   * layout is (B·A)ᵀ.
   */
  readonly fanInFanOut: boolean;
  readonly kind: Exclude<LoraModuleKind, ConvKind>;
}

/**
 * The adapter's factors by module path (no `base_model.model.` prefix, e.g. `transformer.h.0.attn.c_attn`).
 * DoRA and conv modules cannot be expressed as plain factors: refused with `UnsupportedFeatureError`.
 * `lora_B.bias` is not included (nothing a factor pair can hold); a module with one is refused too.
 */
export function adapterFactors(adapter: LoraAdapter): Map<string, ModuleFactors> {
  const out = new Map<string, ModuleFactors>();
  for (const [name, m] of adapter.modules) {
    if (m.magnitude) throw new UnsupportedFeatureError("use_dora", `${name}: DoRA modules cannot be applied as plain low-rank factors`);
    if (m.bBias) throw new UnsupportedFeatureError("lora_bias", `${name}: lora_B.bias cannot be applied as plain low-rank factors`);
    if (isConvKind(m.kind)) throw new UnsupportedFeatureError("target_modules", `${name}: conv LoRA cannot be applied as matrix factors`);
    const { scaling } = resolveModule(adapter.config, name);
    const r = moduleRank(m);
    const dims = moduleDims(m);
    const fs = Math.fround(scaling);
    const B = toFloat32(m.B, true);
    for (let i = 0; i < B.length; i++) B[i] = Math.fround(B[i]! * fs);
    out.set(name, { A: toFloat32(m.A, true), B, r, in: dims.in, out: dims.out, fanInFanOut: m.kind === "conv1d", kind: m.kind });
  }
  return out;
}
