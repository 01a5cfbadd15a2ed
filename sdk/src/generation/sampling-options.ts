/**
 * The sampling options of `generate()` and their validation. Each option means exactly what the
 * transformers 5.24 logits processor of the same name does (see `sampler.ts` for the order they run in);
 * an unset option is off. Invalid values throw `GenerationOptionError` naming the option and what was
 * expected, before any model work starts.
 */
import { LoraportError } from "../errors.js";

/** A generation option has the wrong type or is out of range. `option` names it (`topP`, `stop`, …). */
export class GenerationOptionError extends LoraportError {
  /** The option that was refused, as spelled in the options object. */
  readonly option: string;
  constructor(option: string, message: string) {
    super("E_OPTION", `${option}: ${message}`);
    this.option = option;
  }
}

/** How the next token is chosen from one row of logits. */
export interface SamplingOptions {
  /**
   * Divides the logits before top-k/top-p/min-p (HF `TemperatureLogitsWarper`). A finite number ≥ 0.
   * `0` is greedy decoding (argmax, ties to the lowest id; HF `do_sample=False`): top-k, top-p and min-p are
   * then ignored, the repetition penalty still applies. Unset: `1` when `topK`, `topP` or `minP` is given,
   * else greedy.
   */
  temperature?: number;
  /**
   * Keeps the `topK` highest logits; every token tied with the k-th is kept too (HF `TopKLogitsWarper`).
   * An integer ≥ 0; `0` (or unset) is off. Unlike `transformers.generate`, there is no implicit `top_k=50`
   * default: unset means no top-k filtering.
   */
  topK?: number;
  /**
   * Nucleus sampling (HF `TopPLogitsWarper`): removes the least likely tokens while their cumulative
   * probability stays ≤ `1 - topP`; the most likely token is always kept. A number in (0, 1]; `1` is off.
   */
  topP?: number;
  /**
   * Removes tokens whose probability is below `minP` × the top token's probability, after temperature,
   * top-k and top-p (HF `MinPLogitsWarper`). A number in [0, 1]; `0` removes nothing.
   */
  minP?: number;
  /**
   * Penalises every token id present in the history — prompt and generated ids alike — once, however often it
   * occurs: a negative logit is multiplied by it, any other logit divided by it (HF
   * `RepetitionPenaltyLogitsProcessor`, CTRL paper). A finite number > 0; `1` (or unset) is off; > 1
   * discourages repetition. Applies in greedy decoding too.
   */
  repetitionPenalty?: number;
  /**
   * Seeds the sampler's PRNG (xoshiro128** seeded through splitmix64, see `rng.ts`): the same seed and the
   * same logits give the same tokens on any machine. An integer in [0, 2^64) as a number (safe integer) or
   * a bigint. Unset: a random seed from `crypto`, readable afterwards as `Sampler.seed`.
   */
  seed?: number | bigint;
}

/** `stop` as given to `generate()`: one stop string, or a list of stop strings and/or token ids. */
export type StopOption = string | readonly (string | number)[];

/** `stop` split into its stop strings and stop token ids (order kept, duplicates removed). */
export interface ParsedStop {
  readonly strings: readonly string[];
  readonly ids: readonly number[];
}

const SEED_LIMIT = 1n << 64n;
/** In `u` mode pairs read as one code point, so only lone surrogates are category Cs. */
const LONE_SURROGATE = /\p{Cs}/u;

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return "an array";
  return `a${typeof v === "object" ? "n object" : " " + typeof v}`;
}

function checkNumber(name: string, v: unknown, ok: (x: number) => boolean, expected: string): void {
  if (v === undefined) return;
  if (typeof v !== "number" || !ok(v)) throw new GenerationOptionError(name, `expected ${expected}, got ${describe(v)}`);
}

/**
 * Checks every sampling option's type and range; throws `GenerationOptionError` (code `E_OPTION`) for the
 * first bad one, e.g. `topP: expected a number in (0, 1], got 1.5`. Unknown keys are left alone (they belong
 * to the caller's wider options object).
 */
export function validateSamplingOptions(opts: SamplingOptions): void {
  if (typeof opts !== "object" || opts === null) {
    throw new GenerationOptionError("options", `expected an object, got ${describe(opts)}`);
  }
  checkNumber("temperature", opts.temperature, (x) => Number.isFinite(x) && x >= 0, "a finite number ≥ 0 (0 is greedy)");
  checkNumber("topK", opts.topK, (x) => Number.isSafeInteger(x) && x >= 0, "an integer ≥ 0 (0 is off)");
  checkNumber("topP", opts.topP, (x) => x > 0 && x <= 1, "a number in (0, 1]");
  checkNumber("minP", opts.minP, (x) => x >= 0 && x <= 1, "a number in [0, 1]");
  checkNumber("repetitionPenalty", opts.repetitionPenalty, (x) => Number.isFinite(x) && x > 0, "a finite number > 0 (1 is off)");
  const seed = opts.seed;
  if (seed !== undefined) {
    const ok =
      (typeof seed === "number" && Number.isSafeInteger(seed) && seed >= 0) ||
      (typeof seed === "bigint" && seed >= 0n && seed < SEED_LIMIT);
    if (!ok) throw new GenerationOptionError("seed", `expected an integer in [0, 2^64) (a safe integer or a bigint), got ${describe(seed)}`);
  }
}

/**
 * Validates `stop` and splits it into stop strings and stop token ids. Accepts a string, or an array whose
 * entries are non-empty well-formed strings or non-negative integer token ids (mixed freely). `undefined`
 * gives no stops. Anything else throws `GenerationOptionError` naming `stop` (and the entry's index).
 */
export function parseStop(stop: unknown): ParsedStop {
  if (stop === undefined) return { strings: [], ids: [] };
  const entries: readonly unknown[] | undefined = typeof stop === "string" ? [stop] : Array.isArray(stop) ? stop : undefined;
  if (entries === undefined) {
    throw new GenerationOptionError("stop", `expected a string or an array of strings and token ids, got ${describe(stop)}`);
  }
  const strings = new Set<string>();
  const ids = new Set<number>();
  entries.forEach((e, i) => {
    const where = typeof stop === "string" ? "stop" : `stop[${i}]`;
    if (typeof e === "string") {
      if (e.length === 0) throw new GenerationOptionError(where, "expected a non-empty stop string, got \"\"");
      if (LONE_SURROGATE.test(e)) throw new GenerationOptionError(where, "expected a well-formed string, got one with a lone surrogate");
      strings.add(e);
    } else if (typeof e === "number") {
      if (!Number.isSafeInteger(e) || e < 0) {
        throw new GenerationOptionError(where, `expected a non-negative integer token id, got ${describe(e)}`);
      }
      ids.add(e);
    } else {
      throw new GenerationOptionError(where, `expected a stop string or a non-negative integer token id, got ${describe(e)}`);
    }
  });
  return { strings: [...strings], ids: [...ids] };
}
