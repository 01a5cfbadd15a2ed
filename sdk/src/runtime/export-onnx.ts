/**
 * `exportOnnx(sc, model, out, options)`: the sidecar exports a base model to ONNX for `LoraModel`
 * (adapter-inputs: LoRA factors as graph inputs; merged: an adapter merged in). Writes `out` atomically.
 */
import { resolve } from "node:path";
import type { ExportOnnxParams, ExportOnnxResult } from "../bridge/generated/methods.js";
import type { ModelHandle } from "../bridge/model-handle.js";
import type { CallOptions } from "../bridge/options.js";
import type { Sidecar } from "../bridge/sidecar.js";
import type { ExportMode } from "./manifest.js";

export interface ExportOnnxOptions extends CallOptions {
  /** Default `adapter-inputs`. */
  readonly mode?: ExportMode;
  /** Modules that get LoRA inputs (PEFT list form); default: PEFT's default for the architecture. */
  readonly targets?: readonly string[];
  /** A PEFT adapter folder to merge (mode `merged` with a model folder). With a handle, attach it to the handle instead. */
  readonly adapter?: string;
  /** adapter-inputs: modules whose parameters become whole-tensor inputs (default `classifier` for sequence classification; `[]` none). */
  readonly headInputs?: readonly string[];
  /** Weights as external data: `auto` (default) when the model is over ~1.8 GB. */
  readonly externalData?: "auto" | "yes" | "no";
}

export type { ExportOnnxResult };

/** `model`: a Hugging Face model folder, or a handle loaded in this sidecar. */
export async function exportOnnx(sc: Sidecar, model: string | ModelHandle, out: string, options: ExportOnnxOptions = {}): Promise<ExportOnnxResult> {
  const { mode, targets, adapter, externalData, headInputs, ...call } = options;
  const params: ExportOnnxParams = {
    ...(typeof model === "string" ? { base: resolve(model) } : { handle: model.handle }),
    out: resolve(out),
    ...(mode !== undefined ? { mode } : {}),
    ...(targets !== undefined ? { targets: [...targets] } : {}),
    ...(adapter !== undefined ? { adapter: resolve(adapter) } : {}),
    ...(externalData !== undefined ? { externalData } : {}),
    ...(headInputs !== undefined ? { headInputs: [...headInputs] } : {}),
  };
  const { result } = await sc.call("exportOnnx", params, undefined, call);
  return result;
}
