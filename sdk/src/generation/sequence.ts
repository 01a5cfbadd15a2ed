/**
 * One sequence being generated: its sampler, stop matcher and text decoder, the tokens and text so far, and its
 * timings. Whoever runs the model (the batch loop in generate.ts, the serving scheduler) hands it each step's logits
 * row; the sequence picks the token, streams the delta and says when it is done.
 */
import type { GenerationInfo } from "../runtime/manifest.js";
import type { FinishReason, GenerateOptions, GenerationDelta, GenerationResult } from "./generate-options.js";
import { Sampler } from "./sampler.js";
import { GenerationOptionError, parseStop, validateSamplingOptions, type ParsedStop } from "./sampling-options.js";
import { StopMatcher } from "./stop.js";

/** Turns one sequence's new token ids into text pieces that are always whole characters. */
export interface PieceDecoder {
  /** The text this token completes (possibly empty while a character is incomplete). */
  push(tokenId: number): string;
  /** What is still held back at the end. */
  flush(): string;
}

/** Makes a fresh `PieceDecoder` per sequence; absent when the export has no tokenizer (ids in, ids out). */
export type PieceDecoderFactory = () => PieceDecoder;

const DEFAULT_MAX_NEW_TOKENS = 64;

/** The options of one generation, checked once against the model (before any model work). */
export interface CheckedOptions {
  readonly maxNew: number;
  readonly stop: ParsedStop;
  /** Stop ids from the model (its EOS ids), unless `ignoreEos`. */
  readonly eos: readonly number[];
}

/** Checks the options and the prompts against the model; throws `GenerationOptionError` naming what is wrong. */
export function checkGeneration(gen: GenerationInfo, prompts: readonly (readonly number[])[], options: GenerateOptions, hasTokenizer: boolean): CheckedOptions {
  validateSamplingOptions(options);
  const maxNew = options.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  if (!Number.isSafeInteger(maxNew) || maxNew < 1) throw new GenerationOptionError("maxNewTokens", `expected an integer ≥ 1, got ${String(maxNew)}`);
  const stop = parseStop(options.stop);
  if (stop.strings.length > 0 && !hasTokenizer) {
    throw new GenerationOptionError("stop", "stop strings need a tokenizer, and this export has none (its base folder had no tokenizer.json); give stop token ids instead");
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new GenerationOptionError("signal", "expected an AbortSignal");
  if (prompts.length === 0) throw new GenerationOptionError("prompt", "expected at least one prompt");
  prompts.forEach((p, i) => {
    const field = prompts.length > 1 ? `prompt[${i}]` : "prompt";
    if (p.length === 0) throw new GenerationOptionError(field, "is empty: expected at least one token");
    if (gen.max_positions !== null && p.length + maxNew > gen.max_positions) {
      throw new GenerationOptionError(field, `${p.length} tokens + maxNewTokens ${maxNew} exceed the model's ${gen.max_positions} positions`);
    }
  });
  return { maxNew, stop, eos: options.ignoreEos ? [] : gen.eos_token_ids };
}

export class Sequence {
  readonly index: number;
  readonly prompt: readonly number[];
  readonly tokens: number[] = [];
  text = "";
  finish: FinishReason | undefined;
  stoppedBy: string | number | undefined;
  readonly #history: number[];
  readonly #logits: Float32Array[] = [];
  readonly #keepLogits: boolean;
  readonly #sampler: Sampler;
  readonly #stop: StopMatcher;
  readonly #decoder: PieceDecoder | undefined;
  readonly #maxNew: number;
  readonly #emit: (d: GenerationDelta) => void;
  readonly #t0: number;
  #tFirst = 0;
  #tLast = 0;

  /** `seedOffset`: row i of a batch samples with seed + i, so a prompt's tokens do not depend on its batch. */
  constructor(index: number, prompt: readonly number[], options: GenerateOptions, checked: CheckedOptions, emit: (d: GenerationDelta) => void, decoder?: PieceDecoder, seedOffset = index) {
    this.index = index;
    this.prompt = prompt;
    this.#history = [...prompt];
    this.#keepLogits = options.outputLogits === true;
    this.#sampler = new Sampler({ ...options, ...(options.seed !== undefined ? { seed: (BigInt(options.seed) + BigInt(seedOffset)) % (1n << 64n) } : {}) });
    this.#stop = new StopMatcher(checked.stop, checked.eos);
    this.#decoder = decoder;
    this.#maxNew = checked.maxNew;
    this.#emit = emit;
    this.#t0 = performance.now();
  }

  get done(): boolean {
    return this.finish !== undefined;
  }

  /** Choose the next token from this row's logits, stream its text, and finish on a stop or the length limit. */
  step(logits: Float32Array): number {
    const token = this.#sampler.next(logits, this.#history);
    if (this.#keepLogits) this.#logits.push(logits.slice());
    this.#history.push(token);
    this.tokens.push(token);
    const piece = this.#decoder && !this.#stop.isStopId(token) ? this.#decoder.push(token) : "";
    const s = this.#stop.push(piece, token);
    let text = s.text;
    if (s.done) {
      this.finish = "stop";
      this.stoppedBy = s.stop;
    } else if (this.tokens.length >= this.#maxNew) {
      // The decoder's held-back tail may still complete a stop string: check it before flushing.
      const tail = this.#stop.push(this.#decoder?.flush() ?? "");
      text += tail.text;
      if (tail.done) {
        this.finish = "stop";
        this.stoppedBy = tail.stop;
      } else {
        this.finish = "length";
        text += this.#stop.flush();
      }
    }
    this.text += text;
    const now = performance.now();
    if (this.#tFirst === 0) this.#tFirst = now;
    this.#tLast = now;
    this.#emit({ index: this.index, tokenId: token, text });
    return token;
  }

  /** End it where it is (cancelled): text still held back (a possible stop string's start) is dropped. */
  abort(): void {
    if (this.finish === undefined) this.finish = "abort";
  }

  result(): GenerationResult {
    const end = this.#tLast || performance.now();
    const ttftMs = this.#tFirst ? this.#tFirst - this.#t0 : end - this.#t0;
    const after = this.tokens.length - 1;
    const decodeMs = end - this.#tFirst;
    return {
      index: this.index, tokens: this.tokens, text: this.text, finishReason: this.finish ?? "abort", promptTokens: this.prompt.length,
      timings: { ttftMs, tokensPerSecond: after > 0 && decodeMs > 0 ? (after * 1000) / decodeMs : (this.tokens.length * 1000) / Math.max(end - this.#t0, 1e-3), totalMs: end - this.#t0 },
      ...(this.stoppedBy !== undefined ? { stoppedBy: this.stoppedBy } : {}),
      ...(this.#keepLogits ? { logits: this.#logits } : {}),
    };
  }
}
