/**
 * The generation loop over a cached batch: prefill the (left-padded) prompts once, then one decode step per new
 * token, each row's `Sequence` sampling, streaming and stopping on its own. The KV cache stays in the session
 * worker; only each step's last-position logits come to this thread.
 */
import { RuntimeError } from "../errors.js";
import type { LoraModel } from "../runtime/lora-model.js";
import type { GenerateOptions, GenerationDelta, GenerationResult } from "./generate-options.js";
import { Sequence, checkGeneration, type PieceDecoderFactory } from "./sequence.js";

export type { PieceDecoder, PieceDecoderFactory } from "./sequence.js";

/** The id that fills left padding and finished rows: the model's pad id, else its first EOS id, else 0. */
export function padId(model: LoraModel): number {
  const gen = model.manifest.generation;
  return gen?.pad_token_id ?? gen?.eos_token_ids[0] ?? 0;
}

/** Left-pad prompts to one length: every row's last token in the last column, so one decode step serves all rows. */
export function leftPad(prompts: readonly (readonly number[])[], pad: number): { inputIds: number[][]; attentionMask: number[][] } {
  const longest = Math.max(...prompts.map((p) => p.length));
  return {
    inputIds: prompts.map((p) => [...Array<number>(longest - p.length).fill(pad), ...p]),
    attentionMask: prompts.map((p) => [...Array<number>(longest - p.length).fill(0), ...Array<number>(p.length).fill(1)]),
  };
}

/** The export's generation info, or a typed error saying to re-export. */
export function requireGeneration(model: LoraModel): NonNullable<LoraModel["manifest"]["generation"]> {
  const gen = model.manifest.generation;
  if (!gen) throw new RuntimeError(`${model.dir}: this export has no KV cache (exported without one, or by an earlier loraport); re-export it with 'loraport export' to generate`);
  return gen;
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
  const checked = checkGeneration(requireGeneration(model), prompts, options, decoders !== undefined);
  const pad = padId(model);
  const rows = prompts.map((p, i) => new Sequence(i, p, options, checked, emit, decoders?.()));
  const step0 = await model.prefill(leftPad(prompts, pad), options.adapters ? { adapters: options.adapters } : { adapter: options.adapter ?? null });
  const batch = step0.batch;
  let logits = step0.logits;
  try {
    for (;;) {
      const vocab = logits.shape[1]!;
      const data = logits.data as Float32Array;
      const next = rows.map((row) => (row.done ? pad : row.step(data.subarray(row.index * vocab, (row.index + 1) * vocab))));
      if (rows.every((r) => r.done)) break;
      if (options.signal?.aborted) {
        for (const row of rows) row.abort();
        break;
      }
      logits = (await model.decode(batch, next)).logits;
    }
  } finally {
    await model.release(batch).catch(() => undefined);
  }
  return rows.map((r) => r.result());
}
