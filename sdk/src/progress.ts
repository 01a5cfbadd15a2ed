/**
 * Progress of long operations, as events. The API takes an `onProgress` callback; the CLI draws a bar.
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
