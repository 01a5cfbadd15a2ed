/**
 * The generation loop over a cached batch: prefill the (left-padded) prompts once, then one decode step per new
 * token, sampling every row, streaming its text and stopping rows as they finish. The KV cache stays in the
 * session worker; only each step's last-position logits come to this thread.
 */
import { RuntimeError } from "../errors.js";
import type { LoraModel } from "../runtime/lora-model.js";
import type { FinishReason, GenerateOptions, GenerationDelta, GenerationResult } from "./generate-options.js";
import { Sampler } from "./sampler.js";
import { GenerationOptionError, parseStop, validateSamplingOptions } from "./sampling-options.js";
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

interface Row {
  readonly index: number;
  readonly history: number[];
  readonly tokens: number[];
  readonly logits: Float32Array[];
  readonly stop: StopMatcher;
  readonly decoder: PieceDecoder | undefined;
  text: string;
  finish: FinishReason | undefined;
  stoppedBy: string | number | undefined;
  readonly sampler: Sampler;
}

/** Checks the options that do not depend on the prompts (before any model work); returns maxNewTokens. */
export function checkGenerateOptions(options: GenerateOptions, hasTokenizer: boolean): number {
  validateSamplingOptions(options);
  const max = options.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  if (!Number.isSafeInteger(max) || max < 1) throw new GenerationOptionError("maxNewTokens", `expected an integer ≥ 1, got ${String(max)}`);
  const stop = parseStop(options.stop);
  if (stop.strings.length > 0 && !hasTokenizer) {
    throw new GenerationOptionError("stop", "stop strings need a tokenizer, and this export has none (its base folder had no tokenizer.json); give stop token ids instead");
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new GenerationOptionError("signal", "expected an AbortSignal");
  return max;
}

/**
 * Generate for a batch of token-id prompts (any lengths) with one adapter. `emit` gets every delta in order.
 * Rows that finish early are fed a pad token until the whole batch is done (their output is ignored).
 */
export async function generateBatch(
  model: LoraModel,
  prompts: readonly (readonly number[])[],
  options: GenerateOptions,
  emit: (d: GenerationDelta) => void,
  decoders?: PieceDecoderFactory,
): Promise<GenerationResult[]> {
  const t0 = performance.now();
  const maxNew = checkGenerateOptions(options, decoders !== undefined);
  const gen = model.manifest.generation;
  if (!gen) throw new RuntimeError(`${model.dir}: this export has no KV cache (exported without one, or by an earlier loraport); re-export it with 'loraport export' to generate`);
  if (prompts.length === 0) throw new GenerationOptionError("prompt", "expected at least one prompt");
  const longest = Math.max(...prompts.map((p) => p.length));
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new GenerationOptionError(prompts.length > 1 ? `prompt[${i}]` : "prompt", "is empty: expected at least one token");
    if (gen.max_positions !== null && p.length + maxNew > gen.max_positions) {
      throw new GenerationOptionError(prompts.length > 1 ? `prompt[${i}]` : "prompt", `${p.length} tokens + maxNewTokens ${maxNew} exceed the model's ${gen.max_positions} positions`);
    }
  });

  const stop = parseStop(options.stop);
  const eos = options.ignoreEos ? [] : gen.eos_token_ids;
  const pad = gen.pad_token_id ?? gen.eos_token_ids[0] ?? 0;
  // One sampler per row, row i seeded with seed + i: a prompt's tokens do not depend on what else is in the batch.
  const rows: Row[] = prompts.map((p, index) => ({
    index, history: [...p], tokens: [], logits: [], stop: new StopMatcher(stop, eos), decoder: decoders?.(), text: "", finish: undefined, stoppedBy: undefined,
    sampler: new Sampler({ ...options, ...(options.seed !== undefined ? { seed: (BigInt(options.seed) + BigInt(index)) % (1n << 64n) } : {}) }),
  }));

  // Left padding: every row's last prompt token sits in the last column, so one decode step serves all rows.
  const inputIds = prompts.map((p) => [...Array<number>(longest - p.length).fill(pad), ...p]);
  const attentionMask = prompts.map((p) => [...Array<number>(longest - p.length).fill(0), ...Array<number>(p.length).fill(1)]);
  let step = await model.prefill({ inputIds, attentionMask }, { adapter: options.adapter ?? null });
  const batch = step.batch;
  let ttft = 0;
  let tFirst = 0;
  let produced = 0;
  try {
    for (;;) {
      const vocab = step.logits.shape[1]!;
      const data = step.logits.data as Float32Array;
      const next: number[] = [];
      for (const row of rows) {
        if (row.finish !== undefined) {
          next.push(pad);
          continue;
        }
        const logits = data.subarray(row.index * vocab, (row.index + 1) * vocab);
        const token = row.sampler.next(logits, row.history);
        if (options.outputLogits) row.logits.push(logits.slice());
        row.history.push(token);
        row.tokens.push(token);
        produced++;
        next.push(token);
        const piece = row.decoder && !row.stop.isStopId(token) ? row.decoder.push(token) : "";
        const s = row.stop.push(piece, token);
        let text = s.text;
        if (s.done) {
          row.finish = "stop";
          row.stoppedBy = s.stop;
        } else if (row.tokens.length >= maxNew) {
          // The decoder's held-back tail may still complete a stop string: check it before flushing.
          const tail = row.stop.push(row.decoder?.flush() ?? "");
          text += tail.text;
          if (tail.done) {
            row.finish = "stop";
            row.stoppedBy = tail.stop;
          } else {
            row.finish = "length";
            text += row.stop.flush();
          }
        }
        row.text += text;
        emit({ index: row.index, tokenId: token, text });
      }
      if (ttft === 0) {
        ttft = performance.now() - t0;
        tFirst = performance.now();
      }
      if (rows.every((r) => r.finish !== undefined)) break;
      if (options.signal?.aborted) {
        // Text still held back (a possible stop string's start, a split character) is dropped with the rest.
        for (const row of rows) if (row.finish === undefined) row.finish = "abort";
        break;
      }
      step = { batch, ...(await model.decode(batch, next)) };
    }
  } finally {
    await model.release(batch).catch(() => undefined);
  }
  const totalMs = performance.now() - t0;
  const decodeMs = performance.now() - tFirst;
  const after = produced - rows.length;
  const timings = { ttftMs: ttft, tokensPerSecond: after > 0 && decodeMs > 0 ? (after * 1000) / decodeMs : (produced * 1000) / totalMs, totalMs };
  return rows.map((r) => ({
    index: r.index, tokens: r.tokens, text: r.text, finishReason: r.finish ?? "abort", promptTokens: prompts[r.index]!.length, timings,
    ...(r.stoppedBy !== undefined ? { stoppedBy: r.stoppedBy } : {}),
    ...(options.outputLogits ? { logits: r.logits } : {}),
  }));
}
