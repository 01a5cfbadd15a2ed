/**
 * Training examples and batches. An example is token ids with optional labels and attention mask; a batch pads
 * them on the right (pad id 0, mask 0, label -100 so padding never counts in the loss).
 */
import { FormatError, LoraportError } from "../errors.js";
import type { TrainTask } from "./manifest.js";

export const IGNORE_INDEX = -100;

export interface TrainExample {
  readonly input_ids: readonly number[];
  /** causal-lm: one label per token (-100 = not scored; default: the input ids). seq-cls: the class index. */
  readonly labels?: readonly number[] | number;
  /** 1 = real token, 0 = padding (default: all ones). */
  readonly attention_mask?: readonly number[];
}

export interface Batch {
  readonly shape: readonly [number, number];
  readonly inputIds: BigInt64Array;
  readonly attentionMask: BigInt64Array;
  readonly labels: BigInt64Array;
  /** Real (unpadded) tokens in the batch, for tokens/s. */
  readonly tokens: number;
  /** Scored labels: tokens with a label (causal-lm) or sequences (seq-cls); weights eval means. */
  readonly scored: number;
}

export interface DataLimits {
  readonly task: TrainTask;
  readonly vocabSize: number;
  readonly numLabels: number | null;
  readonly maxPositions: number | null;
}

function isInt(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x);
}

/** Check one example against the model; `where` names it in errors (e.g. `data.jsonl line 3`). */
export function checkExample(ex: TrainExample, limits: DataLimits, where: string): void {
  const bad = (msg: string): never => {
    throw new LoraportError("E_DATA", `${where}: ${msg}`);
  };
  if (!Array.isArray(ex.input_ids) || ex.input_ids.length === 0) bad("input_ids: expected a non-empty list of token ids");
  const n = ex.input_ids.length;
  if (limits.maxPositions && n > limits.maxPositions) bad(`input_ids: ${n} tokens, the model takes at most ${limits.maxPositions}`);
  ex.input_ids.forEach((id, i) => {
    if (!isInt(id) || id < 0 || id >= limits.vocabSize) bad(`input_ids[${i}]: expected an integer in [0, ${limits.vocabSize}), got ${JSON.stringify(id)}`);
  });
  if (ex.attention_mask !== undefined) {
    if (!Array.isArray(ex.attention_mask) || ex.attention_mask.length !== n) bad(`attention_mask: expected ${n} entries (one per input id)`);
    ex.attention_mask.forEach((m, i) => {
      if (m !== 0 && m !== 1) bad(`attention_mask[${i}]: expected 0 or 1, got ${JSON.stringify(m)}`);
    });
  }
  if (limits.task === "seq-cls") {
    const l = ex.labels;
    if (!isInt(l) || l < 0 || l >= (limits.numLabels ?? 0)) bad(`labels: expected a class index in [0, ${limits.numLabels ?? 0}), got ${JSON.stringify(l)}`);
  } else if (ex.labels !== undefined) {
    const l = ex.labels;
    if (!Array.isArray(l) || l.length !== n) bad(`labels: expected ${n} entries (one per input id; -100 = not scored)`);
    (l as readonly number[]).forEach((x, i) => {
      if (!isInt(x) || (x !== IGNORE_INDEX && (x < 0 || x >= limits.vocabSize))) bad(`labels[${i}]: expected -100 or a token id in [0, ${limits.vocabSize}), got ${JSON.stringify(x)}`);
    });
  } else if (n < 2) {
    bad("input_ids: a causal-lm example needs at least 2 tokens (nothing to predict otherwise)");
  }
}

/** Pad examples into one batch. */
export function makeBatch(examples: readonly TrainExample[], task: TrainTask): Batch {
  const b = examples.length;
  const t = Math.max(...examples.map((e) => e.input_ids.length));
  const inputIds = new BigInt64Array(b * t);
  const attentionMask = new BigInt64Array(b * t);
  const labels = new BigInt64Array(task === "seq-cls" ? b : b * t).fill(BigInt(IGNORE_INDEX));
  let tokens = 0;
  let scored = 0;
  examples.forEach((ex, i) => {
    ex.input_ids.forEach((id, j) => {
      inputIds[i * t + j] = BigInt(id);
      const m = ex.attention_mask?.[j] ?? 1;
      attentionMask[i * t + j] = BigInt(m);
      tokens += m;
      if (task === "causal-lm") {
        const l = Array.isArray(ex.labels) ? (ex.labels[j] as number) : m === 1 ? id : IGNORE_INDEX;
        labels[i * t + j] = BigInt(l);
        // Position 0 is never a target (labels shift left by one inside the graph).
        if (l !== IGNORE_INDEX && j > 0) scored++;
      }
    });
    if (task === "seq-cls") {
      labels[i] = BigInt(ex.labels as number);
      scored++;
    }
  });
  return { shape: [b, t], inputIds, attentionMask, labels, tokens, scored };
}

/** A seeded permutation (mulberry32 + Fisher–Yates), so a resumed run sees the same order as an unbroken one. */
export function shuffledOrder(n: number, seed: number): number[] {
  let s = seed >>> 0;
  const rand = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let r = Math.imul(s ^ (s >>> 15), 1 | s);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** Parse JSONL training data: one example per line (`input_ids`, optional `labels`, `attention_mask`; or `text`). */
export function parseJsonl(text: string, file: string): { examples: (TrainExample | { text: string; line: number })[] } {
  const examples: (TrainExample | { text: string; line: number })[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line) as Record<string, unknown>;
    } catch (err) {
      throw new FormatError(file, `line ${i + 1}: not valid JSON (${(err as Error).message})`);
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw new FormatError(file, `line ${i + 1}: expected a JSON object`);
    if (typeof obj["text"] === "string" && obj["input_ids"] === undefined) {
      examples.push({ text: obj["text"], line: i + 1 });
      return;
    }
    if (!Array.isArray(obj["input_ids"])) throw new FormatError(file, `line ${i + 1}: expected "input_ids" (a list of token ids) or "text"`);
    examples.push({
      input_ids: obj["input_ids"] as number[],
      ...(obj["labels"] !== undefined ? { labels: obj["labels"] as number[] | number } : {}),
      ...(obj["attention_mask"] !== undefined ? { attention_mask: obj["attention_mask"] as number[] } : {}),
    });
  });
  if (examples.length === 0) throw new FormatError(file, "no examples (the file is empty)");
  return { examples };
}
