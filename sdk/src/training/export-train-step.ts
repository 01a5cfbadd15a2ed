/**
 * `exportTrainStep(sc, model, out, options)`: the sidecar writes a train-step artifact (graphs, initial adapter,
 * manifest) for `Trainer.load`. The export refuses to finish unless its gates pass (see the method schema).
 */
import { resolve } from "node:path";
import type { ExportTrainStepParams, ExportTrainStepResult } from "../bridge/generated/methods.js";
import type { CallOptions } from "../bridge/options.js";
import type { Sidecar } from "../bridge/sidecar.js";
import type { TrainTask } from "./manifest.js";

export interface ExportTrainStepOptions extends CallOptions {
  /** Default: seq-cls for *ForSequenceClassification models, else causal-lm. */
  readonly task?: TrainTask;
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

export type { ExportTrainStepResult };

/** `model`: a Hugging Face model folder, or `{ builtin: "gpt2", config? }` for a seeded tiny model. */
export async function exportTrainStep(sc: Sidecar, model: string | { builtin: "gpt2" | "llama" | "roberta"; config?: Record<string, unknown> }, out: string,
  options: ExportTrainStepOptions = {}): Promise<ExportTrainStepResult> {
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
  const { result } = await sc.call("exportTrainStep", params, undefined, { timeoutMs: 1_800_000, ...call });
  return result;
}
