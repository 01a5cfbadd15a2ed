/** Messages between the Trainer (main thread) and its worker thread (which owns the ONNX Runtime sessions). */
import type { ExecutionProvider } from "../runtime/providers.js";
import type { TrainExample } from "./data.js";
import type { LrSchedule } from "./schedule.js";

export interface WireState {
  params: Float32Array[];
  m: Float32Array[];
  v: Float32Array[];
  step: number;
  fitStartStep: number;
}

/** The serialisable part of FitOptions (callbacks and the signal stay on the main thread). */
export interface WireFitOptions {
  epochs: number;
  maxSteps: number | undefined;
  batchSize: number;
  lr: number;
  lrSchedule: LrSchedule;
  gradientAccumulation: number;
  evalEvery: number | undefined;
  evalBatchSize: number;
  checkpointEvery: number | undefined;
  checkpointPath: string | undefined;
  shuffle: boolean;
  seed: number;
}

export type WorkerRequest =
  | { id: number; op: "init"; dir: string; providers: readonly ExecutionProvider[]; intraOpNumThreads: number | undefined }
  | { id: number; op: "fit"; state: WireState; data: readonly TrainExample[]; evalData: readonly TrainExample[] | undefined; options: WireFitOptions; abort: SharedArrayBuffer }
  | { id: number; op: "evaluate"; params: Float32Array[]; data: readonly TrainExample[]; batchSize: number }
  | { id: number; op: "forward"; params: Float32Array[]; data: readonly TrainExample[] }
  | { id: number; op: "close" };

export interface StepRecord {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  stepMs: number;
  /** Ranks that took the step (torch engine; the ORT engine runs one). */
  worldSize?: number;
}

export type WorkerEvent =
  | { type: "step"; id: number; record: StepRecord; totalSteps: number }
  | { type: "eval"; id: number; step: number; loss: number }
  | { type: "checkpoint"; id: number; step: number; path: string };

export type WorkerResponse =
  | { type: "result"; id: number; ok: true; state?: WireState; aborted?: boolean; loss?: number; logits?: { data: Float32Array; dims: number[] }; provider?: ExecutionProvider }
  | { type: "result"; id: number; ok: false; error: string; code: string | undefined; state?: WireState };

export type WorkerMessage = WorkerEvent | WorkerResponse;
