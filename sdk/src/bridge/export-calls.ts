/**
 * The options of the sidecar's two exporters, `sc.exportOnnx` and `sc.exportTrainStep`, and how they become the
 * methods' params (paths made absolute: the sidecar's working folder is not the caller's).
 */
import { resolve } from "node:path";
import type { ExportOnnxParams, ExportOnnxResult, ExportTrainStepParams, ExportTrainStepResult } from "./generated/methods.js";
import type { ModelHandle } from "./model-handle.js";
import type { CallOptions } from "./options.js";

export type { ExportOnnxResult, ExportTrainStepResult };

export interface ExportOnnxOptions extends CallOptions {
  /** `adapter-inputs` (default): LoRA factors are graph inputs, swapped per request. `merged`: an adapter merged in. */
  readonly mode?: NonNullable<ExportOnnxParams["mode"]>;
  /** Modules that get LoRA inputs (PEFT list form); default: PEFT's default for the architecture. */
  readonly targets?: readonly string[];
  /** A PEFT adapter folder to merge (mode `merged` with a model folder). With a handle, attach it to the handle instead. */
  readonly adapter?: string;
  /** adapter-inputs: modules whose parameters become whole-tensor inputs (default for sequence classification: every module named `*classifier` / `*score`, as PEFT SEQ_CLS saves them; `[]` none). */
  readonly headInputs?: readonly string[];
  /** Weights as external data: `auto` (default) when the model is over ~1.8 GB. */
  readonly externalData?: "auto" | "yes" | "no";
  /** Causal LMs: a KV-cache graph for `generate` (default `true`); `false` gives the plain forward graph. */
  readonly kvCache?: boolean;
  /** A folder whose tokenizer files are copied into the export (default: the base folder, or a handle's source folder). */
  readonly tokenizer?: string;
  /**
   * adapter-inputs: LoRA inputs get default values so ONNX Runtime's own `.onnx_adapter` mechanism (Python, C#, ORT
   * GenAI) can set them (default false). onnxruntime-node ignores feeds for such inputs, so `LoraModel` refuses them.
   */
  readonly ortAdapterDefaults?: boolean;
}

export interface ExportTrainStepOptions extends CallOptions {
  /** Default: seq-cls for *ForSequenceClassification models, else causal-lm. */
  readonly task?: NonNullable<ExportTrainStepParams["task"]>;
  /** LoRA config of a fresh adapter (PEFT's default init). */
  readonly r?: number;
  readonly alpha?: number;
  readonly targetModules?: readonly string[];
  /** Start from an existing PEFT adapter folder instead. */
  readonly adapter?: string;
  /** torch.optim.AdamW constants (defaults 0.9, 0.999, 1e-8, 0.01). */
  readonly optimizer?: { readonly beta1?: number; readonly beta2?: number; readonly eps?: number; readonly weightDecay?: number };
  readonly seed?: number;
}

/** A model for `exportTrainStep`: a Hugging Face model folder, or a seeded tiny model built in the sidecar. */
export type TrainStepModel = string | { readonly builtin: "gpt2" | "llama" | "roberta"; readonly config?: Record<string, unknown> };

export function exportOnnxCall(model: string | ModelHandle, out: string, options: ExportOnnxOptions): { params: ExportOnnxParams; call: CallOptions } {
  const { mode, targets, adapter, externalData, headInputs, kvCache, tokenizer, ortAdapterDefaults, ...call } = options;
  const params: ExportOnnxParams = {
    ...(typeof model === "string" ? { base: resolve(model) } : { handle: model.handle }),
    out: resolve(out),
    ...(mode !== undefined ? { mode } : {}),
    ...(targets !== undefined ? { targets: [...targets] } : {}),
    ...(adapter !== undefined ? { adapter: resolve(adapter) } : {}),
    ...(externalData !== undefined ? { externalData } : {}),
    ...(headInputs !== undefined ? { headInputs: [...headInputs] } : {}),
    ...(kvCache !== undefined ? { kvCache } : {}),
    ...(ortAdapterDefaults !== undefined ? { ortAdapterDefaults } : {}),
    ...(tokenizer !== undefined ? { tokenizer: resolve(tokenizer) } : {}),
  };
  return { params, call };
}

export function exportTrainStepCall(model: TrainStepModel, out: string, options: ExportTrainStepOptions): { params: ExportTrainStepParams; call: CallOptions } {
  const { task, r, alpha, targetModules, adapter, optimizer, seed, ...call } = options;
  const params: ExportTrainStepParams = {
    ...(typeof model === "string" ? { base: resolve(model) } : { builtin: model.builtin, ...(model.config ? { builtinConfig: model.config } : {}) }),
    out: resolve(out),
    ...(task !== undefined ? { task } : {}),
    ...(adapter !== undefined ? { adapter: resolve(adapter) } : {}),
    lora: { ...(r !== undefined ? { r } : {}), ...(alpha !== undefined ? { alpha } : {}), ...(targetModules ? { targetModules: [...targetModules] } : {}) },
    ...(optimizer ? { optimizer: { ...optimizer } } : {}),
    ...(seed !== undefined ? { seed } : {}),
  };
  // Five graphs traced and checked against PyTorch: minutes on a big model.
  return { params, call: { timeoutMs: 1_800_000, ...call } };
}
