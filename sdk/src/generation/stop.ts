/**
 * Stop strings and stop token ids for one generated sequence, as OpenAI's and vLLM's `stop`: generation ends
 * at the first occurrence of any stop string in the generated text (even one spanning several tokens' pieces)
 * or at a stop token id; neither the stop string nor the stop token's text is emitted. While the end of the
 * pending text could still grow into a stop string it is held back, so a reader of the stream never sees a
 * partial stop string that later turns out to be one; it is released as soon as it cannot.
 *
 * Matching is on UTF-16 code units of exactly the text given (no normalisation). A piece ending in the high
 * half of a surrogate pair (a detokenizer that split a character) is held until its low half arrives.
 */
import { parseStop, type ParsedStop, type StopOption } from "./sampling-options.js";

/** Why a sequence ended in the matcher. */
export type StopReason = "stop_string" | "stop_id";

/** What one `push()` decided. */
export interface StopStep {
  /** Text that may be shown now: never part of a stop string, possibly empty. */
  readonly text: string;
  /** True when the sequence must end here (the matcher accepts no more pushes). */
  readonly done: boolean;
  /** Set when `done`: which kind of stop ended it. */
  readonly reason: StopReason | undefined;
  /** Set when `done`: the stop string matched, or the stop token id. */
  readonly stop: string | number | undefined;
}

/** Watches one sequence's streamed pieces for stop strings and stop ids. */
export class StopMatcher {
  /** The stop strings, in the order given. */
  readonly strings: readonly string[];
  /** The stop token ids (the `stop` option's ids plus any the caller merges in, e.g. EOS). */
  readonly ids: ReadonlySet<number>;
  #pending = "";
  #done = false;

  /**
   * `stop`: the validated stop strings and ids (see `parseStop`); `extraIds`: more stop ids, such as the
   * model's EOS ids.
   */
  constructor(stop: ParsedStop, extraIds: Iterable<number> = []) {
    this.strings = [...stop.strings];
    this.ids = new Set([...stop.ids, ...extraIds]);
  }

  /** Validates the `stop` option (throws `GenerationOptionError` naming `stop`) and builds the matcher. */
  static fromOption(stop: StopOption | undefined, extraIds: Iterable<number> = []): StopMatcher {
    return new StopMatcher(parseStop(stop), extraIds);
  }

  /** True once a stop was found; `push` then throws. */
  get done(): boolean {
    return this.#done;
  }

  /** The text held back so far (a possible beginning of a stop string). */
  get pending(): string {
    return this.#pending;
  }

  /** True when `id` is a stop token id. */
  isStopId(id: number): boolean {
    return this.ids.has(id);
  }

  /**
   * Feeds the next generated token: its decoded text `piece`, and its id when known. A stop id ends the
   * sequence without its piece (the held-back text is released: it can no longer become a stop string);
   * otherwise the piece is appended and the earliest stop string occurrence, if any, ends the sequence with
   * the text before it emitted.
   */
  push(piece: string, tokenId?: number): StopStep {
    if (this.#done) throw new Error("StopMatcher.push: the sequence already stopped");
    if (tokenId !== undefined && this.ids.has(tokenId)) {
      this.#done = true;
      return step(this.#take(this.#pending.length), true, "stop_id", tokenId);
    }
    const text = this.#pending + piece;
    let at = -1;
    let which: string | undefined;
    for (const s of this.strings) {
      const k = text.indexOf(s);
      if (k >= 0 && (at < 0 || k < at)) {
        at = k;
        which = s;
      }
    }
    if (which !== undefined) {
      this.#done = true;
      this.#pending = "";
      return step(text.slice(0, at), true, "stop_string", which);
    }
    this.#pending = text;
    return step(this.#take(text.length - this.#holdLength(text)), false, undefined, undefined);
  }

  /**
   * Ends the sequence for another reason (length limit, cancellation): returns the held-back text, which is
   * then known not to be a stop string.
   */
  flush(): string {
    this.#done = true;
    return this.#take(this.#pending.length);
  }

  /** Removes and returns the first `n` code units of the pending text. */
  #take(n: number): string {
    const out = this.#pending.slice(0, n);
    this.#pending = this.#pending.slice(n);
    return out;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of a stop string (or a split pair's half). */
  #holdLength(text: string): number {
    let hold = 0;
    for (const s of this.strings) {
      for (let len = Math.min(s.length - 1, text.length); len > hold; len--) {
        if (text.endsWith(s.slice(0, len))) {
          hold = len;
          break;
        }
      }
    }
    if (hold === 0 && text.length > 0) {
      const last = text.charCodeAt(text.length - 1);
      if (last >= 0xd800 && last <= 0xdbff) hold = 1;
    }
    return hold;
  }
}

function step(text: string, done: boolean, reason: StopReason | undefined, stop: string | number | undefined): StopStep {
  return { text, done, reason, stop };
}
