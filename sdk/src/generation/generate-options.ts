/**
 * The options of `generate()` beyond sampling, each documented where it is typed, and the shapes of what a
 * generation streams and returns.
 */
import type { SamplingOptions, StopOption } from "./sampling-options.js";

export interface GenerateOptions extends SamplingOptions {
  /** A registered adapter's name; omitted or null = the base model (or a merged export's own adapter). */
  readonly adapter?: string | null;
  /** Batches: one adapter per prompt (null = the base) instead of `adapter` — a mixed-adapter batch in one session run. */
  readonly adapters?: readonly (string | null)[];
  /** New tokens at most per sequence (default 64). Prompt + new tokens must fit the model's positions. */
  readonly maxNewTokens?: number;
  /** Stop strings and/or stop token ids (OpenAI's and vLLM's `stop`); the stop itself is not in the text. */
  readonly stop?: StopOption;
  /** Keep going past the model's EOS ids (vLLM's `ignore_eos`): exactly `maxNewTokens` tokens, for benchmarks and parity. */
  readonly ignoreEos?: boolean;
  /** Cancels the generation at the next step: the result then has `finishReason: "abort"` and what was made so far. */
  readonly signal?: AbortSignal;
  /** Keep every step's raw logits (before any sampling processor) in the result, for parity checks. */
  readonly outputLogits?: boolean;
}

/** Why a sequence ended: a stop string/id or EOS (`stop`), `maxNewTokens` (`length`), or the signal (`abort`). */
export type FinishReason = "stop" | "length" | "abort";

/** One new token of one sequence, as it is made. */
export interface GenerationDelta {
  /** Which prompt of the batch (0 for a single prompt). */
  readonly index: number;
  readonly tokenId: number;
  /** Text that may be shown now: valid UTF-8 always, never part of a stop string; possibly empty (held back). */
  readonly text: string;
}

export interface GenerationTimings {
  /** From the call to the first new token (prefill + first sampling), ms. */
  readonly ttftMs: number;
  /** New tokens per second after the first one (the decode rate; the whole batch's when several). */
  readonly tokensPerSecond: number;
  readonly totalMs: number;
}

export interface GenerationResult {
  readonly index: number;
  /** The new token ids, including the stop/EOS token that ended the sequence (as transformers returns them). */
  readonly tokens: readonly number[];
  /** The new text: every delta's text joined (no stop string, no special tokens). Empty without a tokenizer. */
  readonly text: string;
  readonly finishReason: FinishReason;
  /** The stop string or stop/EOS id that ended it (finishReason `stop`). */
  readonly stoppedBy?: string | number;
  readonly promptTokens: number;
  readonly timings: GenerationTimings;
  /** With `outputLogits`: the raw logits that chose each new token. */
  readonly logits?: readonly Float32Array[];
}
