/**
 * The sampler against transformers 5.24 run in the same test: for seeded random logits and each option combo,
 * fixtures/hf_logits.py builds the LogitsProcessorList exactly as `generate` does
 * (GenerationMixin._get_logits_processor) and applies it; processLogits must keep exactly the same tokens with
 * the same values. Also: the processor order, the PRNG stream against an independent Python implementation,
 * seeded reproducibility, the empirical distribution of draws, greedy decoding and option validation.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LoraportError } from "../../src/errors.js";
import { Rng } from "../../src/generation/rng.js";
import { processLogits, Sampler } from "../../src/generation/sampler.js";
import { GenerationOptionError, validateSamplingOptions, type SamplingOptions } from "../../src/generation/sampling-options.js";
import { runPythonJson, tempDir } from "../helpers/python.js";

interface Case {
  name: string;
  V: number;
  seed: number;
  opts: SamplingOptions;
  history: number[];
  scale?: number;
  quantize?: number;
  negInf?: number;
  values?: number[];
  stableSort?: boolean;
  /** The case is only meaningful if top-p (or top-k) cut through a group of equal logits: checked. */
  splitsTie?: boolean;
}

/** A deterministic history: ids drawn from the test's own PRNG, with repeats, plus two ids outside the vocabulary. */
function history(V: number, n: number, seed: number): number[] {
  const r = new Rng(seed);
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(r.nextUint32() % Math.min(V, 400));
  ids.push(ids[0]!, ids[1]!, V, V + 7);
  return ids;
}

const H1000 = history(1000, 60, 7);
const COMBINED: SamplingOptions = { repetitionPenalty: 1.3, temperature: 0.7, topK: 50, topP: 0.9, minP: 0.05 };
const CASES: Case[] = [
  { name: "temp0.7", V: 1000, seed: 1, opts: { temperature: 0.7 }, history: H1000 },
  { name: "topK50", V: 1000, seed: 2, opts: { topK: 50 }, history: H1000 },
  { name: "topP0.9", V: 1000, seed: 3, opts: { topP: 0.9 }, history: H1000 },
  { name: "minP0.05", V: 1000, seed: 4, opts: { minP: 0.05 }, history: H1000 },
  { name: "rep1.3", V: 1000, seed: 5, opts: { repetitionPenalty: 1.3, temperature: 1 }, history: H1000 },
  { name: "rep1.3-greedy", V: 1000, seed: 5, opts: { repetitionPenalty: 1.3, temperature: 0 }, history: H1000 },
  { name: "rep0.8", V: 1000, seed: 6, opts: { repetitionPenalty: 0.8, topP: 0.95 }, history: H1000 },
  { name: "combined", V: 1000, seed: 7, opts: COMBINED, history: H1000 },
  { name: "combined-noTopK", V: 1000, seed: 8, opts: { repetitionPenalty: 1.2, temperature: 0.8, topP: 0.95, minP: 0.02 }, history: H1000 },
  { name: "hot-topP0.5", V: 1000, seed: 9, scale: 4, opts: { temperature: 1.5, topP: 0.5 }, history: H1000 },
  { name: "topK>V", V: 1000, seed: 10, opts: { topK: 2000, temperature: 0.5 }, history: [] },
  { name: "negInf", V: 1000, seed: 11, negInf: 300, opts: { temperature: 0.9, topK: 800, topP: 0.8, minP: 0.01 }, history: H1000 },
  { name: "gpt2-topP", V: 50257, seed: 12, opts: { temperature: 0.9, topP: 0.9 }, history: history(50257, 200, 12) },
  { name: "gpt2-combined", V: 50257, seed: 13, opts: { repetitionPenalty: 1.3, temperature: 0.7, topK: 40, topP: 0.8, minP: 0.1 }, history: history(50257, 200, 13) },
  { name: "gpt2-minP", V: 50257, seed: 14, scale: 3, opts: { temperature: 1.2, minP: 0.05 }, history: [] },
  { name: "qwen-topP", V: 151936, seed: 15, scale: 3, opts: { temperature: 0.8, topP: 0.95 }, history: history(151936, 300, 15) },
  // Ties. torch.sort is stable up to 16 entries, so these small rows are HF's default path.
  ...[0.3, 0.5, 0.6, 0.75, 0.9].map((topP) => ({
    name: `ties-small-topP${topP}`, V: 10, seed: 0, opts: { topP }, history: [], values: [1, 2, 2, 1, 3, 2, 3, 0, 2, 1],
    splitsTie: topP >= 0.6, // the cut runs through the 2s (0.6, 0.75) or the 1s (0.9): HF removes the lower ids
  })),
  { name: "ties-topK", V: 1000, seed: 16, quantize: 0.5, opts: { topK: 50 }, history: [], splitsTie: true },
  { name: "ties-topP-stable", V: 1000, seed: 17, quantize: 0.5, opts: { topP: 0.8 }, history: [], stableSort: true, splitsTie: true },
  { name: "ties-combined-stable", V: 1000, seed: 18, quantize: 0.25, opts: { temperature: 0.9, topK: 120, topP: 0.7, minP: 0.02 }, history: H1000, stableSort: true },
];

const RNG_SEEDS = ["0", "1", "42", "12345678901234567890", "18446744073709551615"];

interface Reference {
  cases: Record<string, { processors: string[] }>;
  rng: Record<string, number[]>;
}

let tmp: ReturnType<typeof tempDir>;
let ref: Reference;
const report: string[] = [];

function readF32(file: string): Float32Array {
  const b = readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

beforeAll(() => {
  tmp = tempDir("loraport-sampler-");
  const spec = join(tmp.dir, "spec.json");
  writeFileSync(spec, JSON.stringify({ cases: CASES, rngSeeds: RNG_SEEDS, rngCount: 16 }));
  const code = readFileSync(join(import.meta.dirname, "fixtures/hf_logits.py"), "utf8");
  ref = runPythonJson<Reference>(code, [spec, tmp.dir]);
});

afterAll(() => {
  tmp?.cleanup();
  if (report.length > 0) console.log(`processLogits vs transformers (kept / V, max |error| at id):\n${report.join("\n")}`);
});

describe("processLogits equals transformers' LogitsProcessorList", () => {
  it("runs the processors in HF's order", () => {
    expect(ref.cases["combined"]!.processors).toEqual([
      "RepetitionPenaltyLogitsProcessor",
      "TemperatureLogitsWarper",
      "TopKLogitsWarper",
      "TopPLogitsWarper",
      "MinPLogitsWarper",
    ]);
    expect(ref.cases["rep1.3-greedy"]!.processors).toEqual(["RepetitionPenaltyLogitsProcessor"]);
  });

  for (const c of CASES) {
    it(c.name, () => {
      const logits = readF32(join(tmp.dir, `${c.name}.logits.f32`));
      const want = readF32(join(tmp.dir, `${c.name}.scores.f32`));
      expect(logits.length).toBe(c.V);
      const before = logits.slice();
      const got = processLogits(logits, c.history, c.opts);
      expect(logits).toEqual(before); // input untouched
      let kept = 0;
      let maxErr = 0;
      let at = -1;
      const mismatched: number[] = [];
      for (let i = 0; i < c.V; i++) {
        const w = want[i]!;
        const g = got[i]!;
        if ((w === -Infinity) !== (g === -Infinity)) mismatched.push(i);
        else if (w !== -Infinity) {
          kept++;
          const e = Math.abs(w - g);
          if (e > maxErr || at < 0) [maxErr, at] = [Math.max(e, maxErr), i];
        }
      }
      expect(mismatched, `kept set differs at ids ${mismatched.slice(0, 10).join(",")}`).toEqual([]);
      expect(maxErr).toBeLessThanOrEqual(1e-5);
      report.push(`  ${c.name.padEnd(22)} ${String(kept).padStart(6)} / ${c.V}  ${maxErr.toExponential(2)} at ${at}`);
      if (c.splitsTie) {
        // Some logit value has members on both sides of the cut (so the test exercises tie handling).
        const keptValues = new Set<number>();
        const removedValues = new Set<number>();
        const pen = processLogits(logits, c.history, { ...c.opts, topK: 0, topP: 1, minP: 0 });
        for (let i = 0; i < c.V; i++) (got[i] === -Infinity ? removedValues : keptValues).add(pen[i]!);
        const split = [...keptValues].filter((v) => removedValues.has(v));
        if (c.opts.topK) expect(split, "top-k keeps every tie with the k-th").toEqual([]);
        else expect(split.length).toBeGreaterThan(0);
        if (c.opts.topK) expect(kept).toBeGreaterThan(c.opts.topK);
      }
    });
  }
});

describe("Rng (xoshiro128**, splitmix64-seeded)", () => {
  it("gives the same stream as an independent Python implementation", () => {
    for (const s of RNG_SEEDS) {
      const r = new Rng(BigInt(s));
      expect(Array.from({ length: 16 }, () => r.nextUint32()), `seed ${s}`).toEqual(ref.rng[s]);
    }
  });

  it("number and bigint seeds agree; doubles lie in [0, 1)", () => {
    const a = new Rng(42);
    const b = new Rng(42n);
    for (let i = 0; i < 100; i++) {
      const x = a.nextDouble();
      expect(x).toBe(b.nextDouble());
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
    }
    expect(new Rng().seed).not.toBe(new Rng().seed); // random seeds from crypto
  });
});

/** A toy "model": logits depend on the last token, so a different draw changes the later distributions. */
function toyModel(V: number, rows: number): (history: readonly number[]) => Float32Array {
  const r = new Rng(99);
  const table = Array.from({ length: rows }, () => Float32Array.from({ length: V }, () => (r.nextDouble() - 0.5) * 8));
  return (h) => table[(h.at(-1) ?? 0) % rows]!;
}

function generate(sampler: Sampler, model: (h: readonly number[]) => Float32Array, n: number): number[] {
  const h = [1, 2, 3];
  for (let i = 0; i < n; i++) h.push(sampler.next(model(h), h));
  return h.slice(3);
}

describe("Sampler", () => {
  const model = toyModel(1000, 16);
  const opts: SamplingOptions = { temperature: 0.8, topK: 100, topP: 0.95, minP: 0.01, repetitionPenalty: 1.1 };

  it("is reproducible with a seed, and differs with another seed", () => {
    const a = generate(new Sampler({ ...opts, seed: 1234 }), model, 200);
    const b = generate(new Sampler({ ...opts, seed: 1234 }), model, 200);
    const c = generate(new Sampler({ ...opts, seed: 1235 }), model, 200);
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
    expect(new Set(a).size).toBeGreaterThan(20); // it does sample
    const s = new Sampler({ ...opts, seed: 2n ** 63n + 5n });
    expect(s.seed).toBe(2n ** 63n + 5n);
    const unseeded = new Sampler(opts);
    expect(generate(new Sampler({ ...opts, seed: unseeded.seed }), model, 50)).toEqual(generate(unseeded, model, 50));
  });

  it("draws match the processed softmax probabilities (20k draws, chi-square)", () => {
    const r = new Rng(5);
    const V = 64;
    const logits = Float32Array.from({ length: V }, () => (r.nextDouble() - 0.5) * 6);
    const hist = [3, 3, 10];
    const o: SamplingOptions = { temperature: 0.9, topK: 24, topP: 0.9, repetitionPenalty: 1.2, seed: 77 };
    const processed = processLogits(logits, hist, o);
    const max = Math.max(...processed);
    const w = Array.from(processed, (x) => Math.exp(x - max));
    const total = w.reduce((a, b) => a + b, 0);
    const p = w.map((x) => x / total);
    const sampler = new Sampler(o);
    const N = 20_000;
    const counts = new Array<number>(V).fill(0);
    for (let i = 0; i < N; i++) counts[sampler.next(logits, hist)]!++;
    let chi2 = 0;
    let df = -1;
    for (let i = 0; i < V; i++) {
      if (p[i] === 0) {
        expect(counts[i], `removed token ${i} was drawn`).toBe(0);
        continue;
      }
      df++;
      chi2 += (counts[i]! - N * p[i]!) ** 2 / (N * p[i]!);
    }
    expect(df).toBeGreaterThan(5);
    // Mean df, sd sqrt(2 df): 5 sd is a loose bound that a wrong distribution at N = 20k far exceeds.
    expect(chi2).toBeLessThan(df + 5 * Math.sqrt(2 * df));
  });

  it("temperature 0 is argmax (lowest id on ties), ignoring top-k/top-p/min-p and the seed", () => {
    const logits = Float32Array.from([0.5, 3, -1, 3, 2]);
    expect(new Sampler({ temperature: 0 }).next(logits, [])).toBe(1);
    expect(new Sampler({}).next(logits, [])).toBe(1); // no sampling option → greedy
    expect(new Sampler({ seed: 9 }).greedy).toBe(true);
    expect(new Sampler({ temperature: 0, topK: 1, topP: 0.1, minP: 0.9, seed: 3 }).next(logits, [])).toBe(1);
    // The repetition penalty applies in greedy mode too (HF): 3/2 < 2 after both 3s are penalised.
    expect(new Sampler({ temperature: 0, repetitionPenalty: 2 }).next(logits, [1, 3, 3])).toBe(4);
    expect(processLogits(logits, [1, 3, 3], { temperature: 0, repetitionPenalty: 2, topK: 1 })).toEqual(Float32Array.from([0.5, 1.5, -1, 1.5, 2]));
    const r = new Rng(3);
    for (let t = 0; t < 20; t++) {
      const row = Float32Array.from({ length: 5000 }, () => r.nextDouble());
      let best = 0;
      for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
      expect(new Sampler({ temperature: 0 }).next(row, [])).toBe(best);
    }
    expect(new Sampler({ temperature: 0 }).next(Float32Array.from([-Infinity, -Infinity]), [])).toBe(0);
  });

  it("top-p's selection equals a full stable sort on random rows with ties", () => {
    const r = new Rng(11);
    for (let t = 0; t < 200; t++) {
      const V = 1 + (r.nextUint32() % 3000);
      const q = t % 3 === 0 ? 0.25 : 0; // every third row heavily tied
      const logits = Float32Array.from({ length: V }, () => {
        const x = (r.nextDouble() - 0.5) * 10;
        return q ? Math.round(x / q) * q : x;
      });
      const topP = 0.05 + 0.95 * r.nextDouble();
      const got = processLogits(logits, [], { topP });
      const want = sortTopP(logits, topP);
      for (let i = 0; i < V; i++) expect(got[i] === -Infinity, `row ${t} V=${V} topP=${topP} id ${i}`).toBe(want[i]);
    }
  });

  it("handles a 151936-token row in a few milliseconds per token", () => {
    const r = new Rng(1);
    const logits = Float32Array.from({ length: 151_936 }, () => (r.nextDouble() - 0.5) * 12);
    const s = new Sampler({ temperature: 0.8, topP: 0.95, repetitionPenalty: 1.1, seed: 1 });
    const hist = Array.from({ length: 2000 }, (_, i) => (i * 7919) % 151_936);
    s.next(logits, hist);
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) s.next(logits, hist);
    const ms = (performance.now() - t0) / 20;
    report.push(`  Sampler.next, V=151936, temperature+topP+penalty: ${ms.toFixed(2)} ms/token`);
    expect(ms).toBeLessThan(200);
  });
});

/** TopPLogitsWarper by the letter: a full stable ascending sort, double cumsum rounded to float32; true = removed. */
function sortTopP(logits: Float32Array, topP: number): boolean[] {
  const V = logits.length;
  const max = Math.max(...logits);
  const e = Array.from(logits, (x) => Math.exp(Math.fround(x - max)));
  const sum = e.reduce((a, b) => a + b, 0);
  const p = e.map((x) => Math.fround(x / sum));
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[a]! - logits[b]! || a - b);
  const cut = Math.fround(1 - topP);
  const removed = new Array<boolean>(V).fill(false);
  let acc = 0;
  for (let j = 0; j < V - 1; j++) {
    acc += p[order[j]!]!;
    if (Math.fround(acc) > cut) break;
    removed[order[j]!] = true;
  }
  return removed;
}

describe("validateSamplingOptions", () => {
  const bad: [SamplingOptions, string][] = [
    [{ topP: 1.5 }, "topP: expected a number in (0, 1], got 1.5"],
    [{ topP: 0 }, "topP: expected a number in (0, 1], got 0"],
    [{ temperature: -1 }, "temperature: expected a finite number ≥ 0 (0 is greedy), got -1"],
    [{ temperature: Number.NaN }, "temperature: expected a finite number ≥ 0 (0 is greedy), got NaN"],
    [{ topK: 2.5 }, "topK: expected an integer ≥ 0 (0 is off), got 2.5"],
    [{ topK: "5" as unknown as number }, "topK: expected an integer ≥ 0 (0 is off), got \"5\""],
    [{ minP: 2 }, "minP: expected a number in [0, 1], got 2"],
    [{ repetitionPenalty: 0 }, "repetitionPenalty: expected a finite number > 0 (1 is off), got 0"],
    [{ seed: -1 }, "seed: expected an integer in [0, 2^64) (a safe integer or a bigint), got -1"],
    [{ seed: 2n ** 64n }, "seed: expected an integer in [0, 2^64) (a safe integer or a bigint), got 18446744073709551616n"],
    [{ seed: 0.5 }, "seed: expected an integer in [0, 2^64) (a safe integer or a bigint), got 0.5"],
  ];
  it.each(bad)("refuses %o", (opts, message) => {
    const err = (() => {
      try {
        validateSamplingOptions(opts);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(GenerationOptionError);
    expect(err).toBeInstanceOf(LoraportError);
    expect((err as GenerationOptionError).code).toBe("E_OPTION");
    expect((err as GenerationOptionError).message).toBe(message);
    expect(() => new Sampler(opts)).toThrow(GenerationOptionError);
    expect(() => processLogits(new Float32Array(4), [], opts)).toThrow(GenerationOptionError);
  });

  it("accepts the edges of every range", () => {
    expect(() => validateSamplingOptions({ temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1e-3, seed: 0 })).not.toThrow();
    expect(() => validateSamplingOptions({ minP: 1, seed: 2n ** 64n - 1n, seed2: 1 } as SamplingOptions)).not.toThrow();
  });
});
