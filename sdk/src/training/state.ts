/**
 * Training state (LoRA params, AdamW moments, step) and its checkpoint file: one safetensors file holding
 * `p.<key>`, `m.<key>`, `v.<key>` (F32) with the step and the fit's data cursor in the metadata.
 * Written atomically (temp file + rename), so an interrupted write leaves the previous checkpoint whole.
 */
import { FormatError } from "../errors.js";
import { readSafetensors, writeSafetensors } from "../formats/safetensors/index.js";
import { tensor, type Tensor } from "../tensor/index.js";
import type { TrainParamInfo } from "./manifest.js";

export const CHECKPOINT_FORMAT = "loraport-train-checkpoint";

export interface TrainState {
  /** Per manifest param, in manifest order. */
  readonly params: Float32Array[];
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  /** Optimizer steps taken so far (the graphs' `step` input). */
  step: number;
  /** Global step at which the fit that wrote this state began; resuming continues that fit's schedule and data order. */
  fitStartStep: number;
}

export function freshState(params: Float32Array[]): TrainState {
  return { params, m: params.map((p) => new Float32Array(p.length)), v: params.map((p) => new Float32Array(p.length)), step: 0, fitStartStep: 0 };
}

export async function writeCheckpoint(path: string, infos: readonly TrainParamInfo[], state: TrainState): Promise<void> {
  const tensors = new Map<string, Tensor>();
  infos.forEach((info, i) => {
    tensors.set(`p.${info.key}`, tensor("F32", info.shape, state.params[i]!));
    tensors.set(`m.${info.key}`, tensor("F32", info.shape, state.m[i]!));
    tensors.set(`v.${info.key}`, tensor("F32", info.shape, state.v[i]!));
  });
  await writeSafetensors(path, tensors, { format: CHECKPOINT_FORMAT, step: String(state.step), fit_start_step: String(state.fitStartStep) });
}

export async function readCheckpoint(path: string, infos: readonly TrainParamInfo[]): Promise<TrainState> {
  const { tensors, metadata } = await readSafetensors(path);
  if (metadata["format"] !== CHECKPOINT_FORMAT) throw new FormatError(path, `metadata.format: expected "${CHECKPOINT_FORMAT}", got ${JSON.stringify(metadata["format"])}`);
  const int = (k: string): number => {
    const x = Number(metadata[k]);
    if (!Number.isSafeInteger(x) || x < 0) throw new FormatError(path, `metadata.${k}: expected a non-negative integer, got ${JSON.stringify(metadata[k])}`);
    return x;
  };
  const take = (name: string, info: TrainParamInfo): Float32Array => {
    const t = tensors.get(name);
    if (!t) throw new FormatError(path, `tensor '${name}' missing (the checkpoint is from another artifact?)`);
    if (t.dtype !== "F32" || t.shape.join(",") !== info.shape.join(",")) {
      throw new FormatError(path, `tensor '${name}': expected F32 [${info.shape.join(", ")}], got ${t.dtype} [${t.shape.join(", ")}]`);
    }
    return new Float32Array(t.data as Float32Array);
  };
  return {
    params: infos.map((i) => take(`p.${i.key}`, i)),
    m: infos.map((i) => take(`m.${i.key}`, i)),
    v: infos.map((i) => take(`v.${i.key}`, i)),
    step: int("step"),
    fitStartStep: int("fit_start_step"),
  };
}
