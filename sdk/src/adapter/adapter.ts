/**
 * The in-memory LoRA adapter: a PEFT config plus, per adapted module, its factors. Module names are the
 * module paths in the base model, without PEFT's `base_model.model.` prefix (e.g. `transformer.h.0.attn.c_attn`).
 */
import { AdapterError, UnsupportedFeatureError } from "../errors.js";
import type { Tensor } from "../tensor/index.js";
import { numel } from "../tensor/index.js";
import { resolveModule, type LoraConfig, type ResolvedModule } from "./config.js";

/**
 * How the base layer stores its weight, which decides how ΔW is laid out:
 * - `linear`: nn.Linear, W `[out, in]`; ΔW = s·B·A.
 * - `conv1d`: transformers `Conv1D` (fan_in_fan_out), W `[in, out]`; ΔW = (s·B·A)ᵀ.
 * - `embedding`: nn.Embedding, W `[num_embeddings, dim]`; A `[r, num_embeddings]`, B `[dim, r]`; ΔW = (s·B·A)ᵀ.
 * - `conv2d`: nn.Conv2d, W `[out, in, kh, kw]`; A `[r, in, kh, kw]`, B `[out, r, 1, 1]`; ΔW = s·reshape(B·A).
 * - `nn_conv1d` / `conv3d`: nn.Conv1d / nn.Conv3d, the same with one / three kernel dims (`conv1d` already names
 *   transformers' Conv1D, so torch's Conv1d gets the unambiguous `nn_conv1d`).
 */
export type LoraModuleKind = "linear" | "conv1d" | "embedding" | ConvKind;

/** torch convolutions (nn.Conv1d/2d/3d): W `[out, in, k…]`, flattened to `[out, in·Πk]` for ΔW = s·B·A. */
export type ConvKind = "nn_conv1d" | "conv2d" | "conv3d";

/** The conv kind for a weight with `spatial` kernel dims (1, 2 or 3), else undefined. */
export function convKindForSpatialDims(spatial: number): ConvKind | undefined {
  return spatial === 1 ? "nn_conv1d" : spatial === 2 ? "conv2d" : spatial === 3 ? "conv3d" : undefined;
}

export function isConvKind(kind: LoraModuleKind): kind is ConvKind {
  return kind === "nn_conv1d" || kind === "conv2d" || kind === "conv3d";
}

export interface LoraModule {
  readonly kind: LoraModuleKind;
  /** `[r, in]` (`[r, in, kh, kw]` for conv2d; `[r, num_embeddings]` for embeddings). */
  readonly A: Tensor;
  /** `[out, r]` (`[out, r, 1, 1]` for conv2d; `[dim, r]` for embeddings). */
  readonly B: Tensor;
  /** DoRA magnitude `m`: `[out]` (`[1, out, 1, 1]` for conv2d, `[dim]` for embeddings). */
  readonly magnitude?: Tensor;
  /** `lora_B.bias` (`lora_bias=True`): `[out]`. */
  readonly bBias?: Tensor;
}

export interface LoraAdapter {
  readonly config: LoraConfig;
  /** Adapted modules by module path, in key order. */
  readonly modules: ReadonlyMap<string, LoraModule>;
  /**
   * Tensors saved whole, by their path in the base model (no prefix): `modules_to_save` weights
   * (e.g. `classifier.dense.weight`), base biases for `bias != "none"`, saved embedding layers, trainable-token deltas.
   */
  readonly extraTensors: ReadonlyMap<string, Tensor>;
}

/** Rank of a module from its A tensor (first dimension). */
export function moduleRank(m: LoraModule): number {
  return m.A.shape[0]!;
}

/** Input and output sizes in the `[out, in]` sense (embeddings: in = num_embeddings, out = dim). */
export function moduleDims(m: LoraModule): { in: number; out: number } {
  const inner = m.A.shape.slice(1);
  return { in: numel(inner), out: m.B.shape[0]! };
}

/** The base weight's stored shape this module fits. */
export function baseWeightShape(m: LoraModule): number[] {
  const { in: nIn, out } = moduleDims(m);
  switch (m.kind) {
    case "linear":
      return [out, nIn];
    case "conv1d":
    case "embedding":
      return [nIn, out];
    case "nn_conv1d":
    case "conv2d":
    case "conv3d":
      return [out, ...m.A.shape.slice(1)];
  }
}

export interface ModuleSummary extends ResolvedModule {
  readonly name: string;
  readonly kind: LoraModuleKind;
  readonly in: number;
  readonly out: number;
  readonly dora: boolean;
  readonly params: number;
}

/** Per-module rank, alpha, scaling and parameter count, checking that tensor ranks agree with the config. */
export function describeAdapter(adapter: LoraAdapter): { modules: ModuleSummary[]; loraParams: number; extraParams: number } {
  const modules: ModuleSummary[] = [];
  let loraParams = 0;
  for (const [name, m] of adapter.modules) {
    const res = resolveModule(adapter.config, name);
    const { in: nIn, out } = moduleDims(m);
    const params = numel(m.A.shape) + numel(m.B.shape) + (m.magnitude ? numel(m.magnitude.shape) : 0) + (m.bBias ? numel(m.bBias.shape) : 0);
    loraParams += params;
    modules.push({ name, kind: m.kind, in: nIn, out, dora: m.magnitude !== undefined, params, ...res });
  }
  let extraParams = 0;
  for (const t of adapter.extraTensors.values()) extraParams += numel(t.shape);
  return { modules, loraParams, extraParams };
}

/** Check every module's tensors against each other and against the config's rank for that module. */
export function validateAdapter(adapter: LoraAdapter, where = "adapter"): void {
  for (const [name, m] of adapter.modules) {
    const r = m.A.shape[0];
    if (isConvKind(m.kind)) validateConvShapes(m, name, where);
    const want = resolveModule(adapter.config, name).r;
    if (r !== want) {
      throw new AdapterError(`${where}: module ${name}: lora_A has rank ${r} (shape [${m.A.shape.join(", ")}]) but the config gives r=${want} (r, rank_pattern)`, { code: "E_RANK" });
    }
    const bR = m.B.shape[1];
    if (bR !== r) throw new AdapterError(`${where}: module ${name}: lora_B shape [${m.B.shape.join(", ")}] does not match lora_A shape [${m.A.shape.join(", ")}] (rank ${r})`, { code: "E_RANK" });
    const out = m.B.shape[0]!;
    if (m.magnitude && numel(m.magnitude.shape) !== out) throw new AdapterError(`${where}: module ${name}: lora_magnitude_vector shape [${m.magnitude.shape.join(", ")}] does not fit ${out} outputs`);
    if (m.bBias && numel(m.bBias.shape) !== out) throw new AdapterError(`${where}: module ${name}: lora_B.bias shape [${m.bBias.shape.join(", ")}] does not fit ${out} outputs`);
    if (!isConvKind(m.kind) && (m.A.shape.length !== 2 || m.B.shape.length !== 2)) {
      throw new AdapterError(`${where}: module ${name}: expected 2-D lora_A/lora_B, got [${m.A.shape.join(", ")}] and [${m.B.shape.join(", ")}]`);
    }
  }
}

/**
 * Conv LoRA as PEFT saves it: A `[r, in, k…]`, B `[out, r, 1…]` with as many kernel dims as the kind. A B with
 * fewer than r input channels is PEFT's LoRA on a grouped conv (lora_B has `groups = base.groups`, lora_A is dense
 * across groups): its ΔW does not fit the grouped base weight, and PEFT refuses to merge it, so loraport does too.
 */
function validateConvShapes(m: LoraModule, name: string, where: string): void {
  const spatial = m.kind === "nn_conv1d" ? 1 : m.kind === "conv2d" ? 2 : 3;
  const r = m.A.shape[0]!;
  const bIn = m.B.shape[1];
  const ones = m.B.shape.slice(2).every((d) => d === 1);
  if (m.A.shape.length !== spatial + 2 || m.B.shape.length !== spatial + 2 || !ones) {
    const k = Array.from({ length: spatial }, (_, i) => `k${i}`).join(", ");
    throw new AdapterError(`${where}: module ${name}: ${m.kind} LoRA needs A [r, in, ${k}] and B [out, r${", 1".repeat(spatial)}], got [${m.A.shape.join(", ")}] and [${m.B.shape.join(", ")}]`);
  }
  if (bIn !== undefined && bIn !== r && bIn > 0 && r % bIn === 0) {
    throw new UnsupportedFeatureError("groups", `${where}: module ${name}: lora_B [${m.B.shape.join(", ")}] has ${bIn} of r=${r} input channels: LoRA on a conv with groups=${r / bIn}, which PEFT does not merge ("Merging is not supported for _ConvNd layers with groups > 1") and loraport refuses too`);
  }
}
