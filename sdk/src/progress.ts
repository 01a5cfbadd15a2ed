/**
 * Progress of long operations, as events. The API takes an `onProgress` callback; the CLI draws a bar on a
 * terminal, or phase lines with `--progress`.
 *
 * Phases a caller sees: `export` (sc.exportOnnx, sc.exportTrainStep: one event per stage, `done` = the stage's index of `total`,
 * `message` its name, a last one with done = total), `export.capture` (one per model block while torch.export
 * traces it, unit `layers`), `loadModel`, `attachAdapter`, `merge` (tensors), `conformance` (cases), `load`
 * (ONNX Runtime sessions), `train` (steps). Events of one phase come in order, with done ≤ total.
 */
export interface ProgressEvent {
  /** What is being done, e.g. `merge`, `read`, `export`, `train`. */
  readonly phase: string;
  /** Units done so far. */
  readonly done: number;
  /** Units in all, when known. */
  readonly total?: number;
  /** What a unit is: `tensors`, `bytes`, `steps`. */
  readonly unit?: string;
  /** A short human note, e.g. the current tensor's name or the loss. */
  readonly message?: string;
}

export type ProgressCallback = (event: ProgressEvent) => void;
