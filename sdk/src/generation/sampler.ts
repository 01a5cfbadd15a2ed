/**
 * Next-token selection from one row of logits, with transformers 5.24's semantics and order
 * (`GenerationMixin._get_logits_processor`): the processors first — `RepetitionPenaltyLogitsProcessor` —
 * then, when sampling (`do_sample=True`), the warpers `TemperatureLogitsWarper` → `TopKLogitsWarper` →
 * `TopPLogitsWarper` → `MinPLogitsWarper` (min-p after temperature, top-k and top-p), then softmax and a draw.
 * Greedy decoding (temperature 0) applies only the processors, then argmax (ties → lowest id, as
 * `torch.argmax`). Arithmetic mirrors PyTorch's float32 ops (each scaled logit is the float32 result, the
 * thresholds are compared in float32, top-p's cumulative sum accumulates in double as ATen's CPU cumsum does),
 * so processed logits equal HF's bit for bit and the kept set matches except where a probability lies within
 * float32 rounding of a threshold.
 *
 * Cost per token is O(V) expected, with no full sort: top-k is a quickselect, top-p a quickselect weighted by
 * probability mass that stops at the cut. Ties in top-p: PyTorch's `torch.sort` (unstable above 16 entries)
 * leaves which of several equal logits straddling the cut survive unspecified; here the order is stable
 * (`torch.sort(stable=True)`): the lower ids are removed first. NaN logits are treated as -Infinity.
 */
import { RuntimeError } from "../errors.js";
import { Rng } from "./rng.js";
import { validateSamplingOptions, type SamplingOptions } from "./sampling-options.js";

/** The options resolved to the processors that run: each field at its "off" value when not applied. */
interface Plan {
  readonly greedy: boolean;
  /** float32 of the penalty; 1 = off. */
  readonly penalty: number;
  /** float32 of the temperature; 1 = off (also in greedy mode). */
  readonly temperature: number;
  /** 0 = off. */
  readonly topK: number;
  /** float32(1 − topP), the cut of TopPLogitsWarper; undefined = off. */
  readonly topPCut: number | undefined;
  /** float32(minP); undefined = off. */
  readonly minP: number | undefined;
}

const f32 = Math.fround;

function plan(opts: SamplingOptions): Plan {
  validateSamplingOptions(opts);
  const anyWarper = opts.topK !== undefined || opts.topP !== undefined || opts.minP !== undefined;
  const greedy = opts.temperature === 0 || (opts.temperature === undefined && !anyWarper);
  const penalty = opts.repetitionPenalty ?? 1;
  return {
    greedy,
    penalty: f32(penalty),
    temperature: greedy ? 1 : f32(opts.temperature ?? 1),
    topK: greedy ? 0 : opts.topK ?? 0,
    topPCut: greedy || opts.topP === undefined || opts.topP >= 1 ? undefined : f32(1 - opts.topP),
    minP: greedy || opts.minP === undefined ? undefined : f32(opts.minP),
  };
}

/** Buffers reused from token to token (one vocabulary size). */
class Workspace {
  readonly scores: Float32Array;
  /** Candidate (unmasked) token ids; the first `n` entries are live. */
  readonly idx: Int32Array;
  /** Probabilities by token id (float32), or softmax numerators; see `probsFresh`. */
  readonly probs: Float32Array;
  /** Top-p scratch by position: token ids, scores and probabilities moved together (`key` is top-k's too). */
  readonly ids: Int32Array;
  readonly key: Float32Array;
  readonly w: Float32Array;
  /** Marks history ids for the repetition penalty: `mark[id] === stamp` means seen this call. */
  readonly mark: Uint32Array;
  stamp = 0;
  n = 0;
  /** The largest candidate score (the top token survives every warper, so it stays the max). */
  max = -Infinity;
  /** True when `probs` holds the current candidates' softmax, up to a common factor. */
  probsFresh = false;
  constructor(readonly vocab: number) {
    this.scores = new Float32Array(vocab);
    this.idx = new Int32Array(vocab);
    this.probs = new Float32Array(vocab);
    this.ids = new Int32Array(vocab);
    this.key = new Float32Array(vocab);
    this.w = new Float32Array(vocab);
    this.mark = new Uint32Array(vocab);
  }
}

/**
 * The logits of the distribution that would be sampled from (greedy: the processed logits argmax'd): the
 * repetition penalty applied, then — when sampling — temperature, top-k, top-p and min-p, removed entries
 * `-Infinity`. Equals `LogitsProcessorList(...)(input_ids, scores)` as transformers' `generate` builds it.
 * `history` is the row's prompt and generated ids (ids outside the vocabulary are ignored, as HF does).
 * Does not modify `logits`. Throws `GenerationOptionError` for invalid options.
 */
export function processLogits(logits: Float32Array, history: ArrayLike<number>, opts: SamplingOptions): Float32Array {
  const ws = new Workspace(logits.length);
  run(logits, history, plan(opts), ws);
  return ws.scores.slice();
}

/**
 * Chooses next tokens for one sequence (or several, drawing from one stream in call order). Built once per
 * `generate()` call from its options; validates them up front.
 */
export class Sampler {
  /** True when decoding greedily (temperature 0, or no sampling option given). */
  readonly greedy: boolean;
  /** The seed of the PRNG: the `seed` option, or the random one drawn when it was unset. */
  readonly seed: bigint;
  readonly #plan: Plan;
  readonly #rng: Rng;
  #ws: Workspace | undefined;

  /** Throws `GenerationOptionError` (code `E_OPTION`) for an invalid option. */
  constructor(opts: SamplingOptions = {}) {
    this.#plan = plan(opts);
    this.greedy = this.#plan.greedy;
    this.#rng = new Rng(opts.seed);
    this.seed = this.#rng.seed;
  }

  /**
   * The next token id, given one row's logits (float32, length = vocabulary size) and the row's token history
   * (prompt + generated ids so far). `logits` is not modified.
   */
  next(logits: Float32Array, history: ArrayLike<number>): number {
    const V = logits.length;
    if (V === 0) throw new RuntimeError("logits: expected at least one entry, got an empty row");
    const p = this.#plan;
    if (p.greedy && p.penalty === 1) return argmax(logits);
    if (this.#ws?.vocab !== V) this.#ws = new Workspace(V);
    const ws = this.#ws;
    run(logits, history, p, ws);
    if (p.greedy) return argmax(ws.scores);
    return draw(ws, this.#rng.nextDouble());
  }
}

// ---- the pipeline ------------------------------------------------------------------------------


function run(logits: Float32Array, history: ArrayLike<number>, p: Plan, ws: Workspace): void {
  const V = logits.length;
  const s = ws.scores;
  s.set(logits);
  if (p.penalty !== 1) repetitionPenalty(s, history, p.penalty, ws);
  if (p.greedy) return;
  // Temperature (a Float32Array store rounds the double quotient: float32 division, as PyTorch's), and the
  // candidates: every entry not already -Infinity (NaN counts as -Infinity). Masked entries have probability
  // exactly 0 in PyTorch's softmax, so working on the candidates alone changes no sum or cut.
  const t = p.temperature;
  const idx = ws.idx;
  let n = 0;
  let max = -Infinity;
  for (let i = 0; i < V; i++) {
    if (t !== 1) s[i] = s[i]! / t;
    const x = s[i]!;
    if (x > -Infinity) {
      idx[n++] = i;
      if (x > max) max = x;
    } else s[i] = -Infinity;
  }
  if (n === 0) throw new RuntimeError("logits: every entry is -Infinity or NaN, nothing can be sampled");
  ws.n = n;
  ws.max = max;
  ws.probsFresh = false;
  if (p.topK > 0 && p.topK < n) topK(ws, p.topK);
  if (p.topPCut !== undefined) topP(ws, p.topPCut);
  if (p.minP !== undefined) minP(ws, p.minP);
}

/** HF RepetitionPenaltyLogitsProcessor: each distinct id of the history once; x < 0 → x·θ, else x/θ (float32). */
function repetitionPenalty(s: Float32Array, history: ArrayLike<number>, theta: number, ws: Workspace): void {
  const V = s.length;
  const mark = ws.mark;
  if (++ws.stamp === 0xffffffff) {
    mark.fill(0);
    ws.stamp = 1;
  }
  const stamp = ws.stamp;
  for (let j = 0; j < history.length; j++) {
    const id = history[j]!;
    if (!(id >= 0 && id < V) || !Number.isInteger(id) || mark[id] === stamp) continue;
    mark[id] = stamp;
    const x = s[id]!;
    s[id] = x < 0 ? x * theta : x / theta; // rounded to float32 by the store: PyTorch's float32 op
  }
}

/** HF TopKLogitsWarper: removes scores < the k-th largest (so ties with the k-th all stay). */
function topK(ws: Workspace, k: number): void {
  const { idx, scores: s, key } = ws;
  const n = ws.n;
  for (let j = 0; j < n; j++) key[j] = s[idx[j]!]!;
  const kth = select(key, n, n - k);
  let m = 0;
  for (let j = 0; j < n; j++) {
    const id = idx[j]!;
    if (s[id]! >= kth) idx[m++] = id;
    else s[id] = -Infinity;
  }
  ws.n = m;
}

/**
 * Softmax numerators exp(float32(x − max)) of the candidates into `ws.probs` (by id); returns their sum.
 * Divided by the sum and rounded to float32 they are PyTorch's float32 softmax up to its last-bit rounding.
 */
function numerators(ws: Workspace): number {
  const { idx, scores: s, probs } = ws;
  const max = ws.max;
  let sum = 0;
  for (let j = 0; j < ws.n; j++) {
    const id = idx[j]!;
    const e = Math.exp(f32(s[id]! - max));
    probs[id] = e;
    sum += e;
  }
  ws.probsFresh = true;
  return sum;
}

/**
 * HF TopPLogitsWarper (min_tokens_to_keep = 1): in ascending order of score, removes tokens while the
 * cumulative probability (float32 of a double accumulation, as ATen's CPU cumsum) is ≤ float32(1 − top_p); the
 * last (largest) token always stays. Instead of sorting: one pass sets aside the tokens too small to matter,
 * then a three-way quickselect weighted by mass narrows to the cut.
 */
function topP(ws: Workspace, cut: number): void {
  const { idx, scores: s, probs, ids, key, w } = ws;
  const n = ws.n;
  const sum = numerators(ws);
  // Everything with p < cut / 2n is under cut / 2 together and below every other token (p is monotone in the
  // score), so it is all removed: placed first, the rest from the back. Most of a real model's vocabulary is
  // such a long tail. Position j then holds token ids[j], its score key[j] and probability w[j].
  const tiny = cut / (2 * n);
  let lo = 0;
  let back = n;
  let base = 0; // the mass of everything before `lo` in ascending order
  for (let j = 0; j < n; j++) {
    const id = idx[j]!;
    const q = f32(probs[id]! / sum);
    if (q < tiny) {
      base += q;
      ids[lo] = id;
      key[lo] = s[id]!;
      w[lo++] = q;
    } else {
      ids[--back] = id;
      key[back] = s[id]!;
      w[back] = q;
    }
  }
  let hi = n;
  let keepFrom: number; // the first position (ascending) that is kept
  for (;;) {
    if (hi - lo <= 24) {
      for (let j = lo + 1; j < hi; j++) {
        // insertion sort by (score, id)
        for (let i = j; i > lo && (key[i - 1]! > key[i]! || (key[i - 1] === key[i] && ids[i - 1]! > ids[i]!)); i--) {
          swap3(ids, key, w, i - 1, i);
        }
      }
      keepFrom = walk(w, lo, hi, base, cut);
      break;
    }
    const pivot = medianOf3(key[lo]!, key[(lo + hi) >>> 1]!, key[hi - 1]!);
    // Dutch-flag partition of [lo, hi): [lo, lt) < pivot, [lt, gt) == pivot, [gt, hi) > pivot.
    let lt = lo;
    let gt = hi;
    let j = lo;
    let massBelow = 0;
    while (j < gt) {
      const x = key[j]!;
      if (x < pivot) {
        massBelow += w[j]!;
        swap3(ids, key, w, j++, lt++);
      } else if (x > pivot) swap3(ids, key, w, j, --gt);
      else j++;
    }
    if (f32(base + massBelow) > cut) {
      hi = lt; // the cut lies among the smaller ones (lt > lo, as f32(base) ≤ cut holds here)
      continue;
    }
    base += massBelow;
    // Equal scores have equal probabilities: putting them in id order (the stable order) leaves w as it is.
    ids.subarray(lt, gt).sort();
    keepFrom = walk(w, lt, gt, base, cut);
    if (keepFrom < gt) break;
    for (let i = lt; i < gt; i++) base += w[i]!;
    lo = gt;
  }
  keepFrom = Math.min(keepFrom, n - 1); // min_tokens_to_keep = 1: the largest stays
  for (let j = 0; j < keepFrom; j++) s[ids[j]!] = -Infinity;
  idx.set(ids.subarray(keepFrom, n));
  ws.n = n - keepFrom;
}

/** The first position in [from, to) where the running mass, rounded to float32, exceeds `cut`; else `to`. */
function walk(w: Float32Array, from: number, to: number, base: number, cut: number): number {
  for (let j = from; j < to; j++) {
    base += w[j]!;
    if (f32(base) > cut) return j;
  }
  return to;
}

function swap3(ids: Int32Array, key: Float32Array, w: Float32Array, a: number, b: number): void {
  const id = ids[a]!;
  const k = key[a]!;
  const q = w[a]!;
  ids[a] = ids[b]!;
  key[a] = key[b]!;
  w[a] = w[b]!;
  ids[b] = id;
  key[b] = k;
  w[b] = q;
}

/**
 * HF MinPLogitsWarper: removes p < float32(min_p · p_max). min_tokens_to_keep = 1 needs no special case: the top
 * token's p is p_max itself (exp(0) / sum, rounded alike) and min_p ≤ 1.
 */
function minP(ws: Workspace, minP: number): void {
  const { idx, scores: s, probs } = ws;
  const n = ws.n;
  const sum = numerators(ws);
  const threshold = f32(minP * f32(1 / sum));
  let m = 0;
  for (let j = 0; j < n; j++) {
    const id = idx[j]!;
    if (f32(probs[id]! / sum) >= threshold) idx[m++] = id; // candidate order kept
    else s[id] = -Infinity;
  }
  ws.n = m;
}

/**
 * Draws one candidate with probability softmax(score), given u uniform in [0, 1). Removing candidates leaves
 * the others' softmax numerators as they were (the top one always stays, so the max does), so those of the
 * last top-p or min-p pass serve as weights when they are fresh.
 */
function draw(ws: Workspace, u: number): number {
  const { idx, scores: s, probs: w } = ws;
  const n = ws.n;
  if (n === 1) return idx[0]!;
  let sum = 0;
  if (ws.probsFresh) {
    for (let j = 0; j < n; j++) sum += w[idx[j]!]!;
  } else {
    const max = ws.max;
    for (let j = 0; j < n; j++) {
      const id = idx[j]!;
      const e = Math.exp(s[id]! - max);
      w[id] = e;
      sum += e;
    }
  }
  const target = u * sum;
  let acc = 0;
  for (let j = 0; j < n; j++) {
    const id = idx[j]!;
    acc += w[id]!;
    if (acc > target) return id;
  }
  return idx[n - 1]!; // u·sum rounded up to the total
}

/** Index of the largest entry, the lowest index among ties (NaN never wins; all -Infinity or NaN → 0). */
function argmax(x: Float32Array): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

// ---- selection ---------------------------------------------------------------------------------

function medianOf3(a: number, b: number, c: number): number {
  if (a < b) return b < c ? b : a < c ? c : a;
  return a < c ? a : b < c ? c : b;
}

/**
 * The value at ascending position `r` of a[0, n) (reorders a): Hoare quickselect with a median-of-3 pivot,
 * finishing with a sort when the range is small or shrinks too slowly.
 */
function select(a: Float32Array, n: number, r: number): number {
  let lo = 0;
  let hi = n - 1;
  let budget = 2 * Math.ceil(Math.log2(n + 1)) + 8;
  while (hi > lo) {
    if (hi - lo < 32 || budget-- === 0) {
      a.subarray(lo, hi + 1).sort();
      return a[r]!;
    }
    const pivot = medianOf3(a[lo]!, a[(lo + hi) >>> 1]!, a[hi]!);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (r <= j) hi = j;
    else if (r >= i) lo = i;
    else return a[r]!;
  }
  return a[r]!;
}
