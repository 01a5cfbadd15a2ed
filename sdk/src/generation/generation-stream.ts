/**
 * What `generate()` returns: an async iterable of deltas whose end gives the result. Iterate it for streaming,
 * or just `await stream.result` (the generation runs either way; deltas are buffered until read).
 */
import type { GenerationDelta } from "./generate-options.js";

export class GenerationStream<R> implements AsyncIterable<GenerationDelta> {
  /** Resolves when every sequence has finished (also after an abort); rejects if the generation failed. */
  readonly result: Promise<R>;
  readonly #buffer: GenerationDelta[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #error: unknown;

  /** `run` gets `emit` for each delta and returns the result. */
  constructor(run: (emit: (d: GenerationDelta) => void) => Promise<R>) {
    this.result = run((d) => {
      this.#buffer.push(d);
      this.#notify();
    }).then(
      (r) => {
        this.#ended = true;
        this.#notify();
        return r;
      },
      (err: unknown) => {
        this.#ended = true;
        this.#error = err;
        this.#notify();
        throw err;
      },
    );
    // A caller who only iterates sees the error there; do not also report it as unhandled.
    this.result.catch(() => undefined);
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<GenerationDelta> {
    for (;;) {
      while (this.#buffer.length > 0) yield this.#buffer.shift()!;
      if (this.#ended) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }
}
