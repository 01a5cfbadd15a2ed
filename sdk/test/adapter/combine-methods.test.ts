/**
 * Every PEFT combination type against PEFT's add_weighted_adapter in the same run: two tiny models (Linear +
 * Embedding + Conv2d; GPT-2 style Conv1D + Embedding; a 400×512 Linear for the iterative SVD path), adapters of ranks 2/4/6 with different alphas, rsLoRA
 * and an alpha_pattern, negative weights, one adapter missing a module. Factor methods (linear, ties, dare_*,
 * magnitude_prune) and cat: factors equal PEFT's to 1e-6. SVD methods: B·A within 1e-4 relative (Frobenius);
 * svd_clamp after aligning singular-vector signs with PEFT's. DARE: masks from loraport's torch-CPU generator
 * equal PEFT's for the same seed — set right before add_weighted_adapter, or at the first mask (fixture:
 * combine_methods.py) — and the sampler is checked statistically.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clampFactors, combineAdapters, COMBINATION_METHODS, TorchCpuGenerator, type CombinationMethod, type CombineOptions } from "../../src/adapter/combine.js";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import type { LoraAdapter } from "../../src/adapter/adapter.js";
import { resolveModule } from "../../src/adapter/config.js";
import { readSafetensors } from "../../src/formats/safetensors/index.js";
import { AdapterError, ArgumentError } from "../../src/errors.js";
import { toFloat32, type Tensor } from "../../src/tensor/index.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { runCli } from "../helpers/cli.js";
import { registerCombine } from "../../src/cli/commands/combine.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/combine_methods.py"), "utf8");
const MODELS = ["linear", "conv1d"] as const;
/** A third model, 400×512, for the iterative SVD path (a few cases). */
const ALL_MODELS = [...MODELS, "wide"] as const;

interface PeftCase {
  model: (typeof ALL_MODELS)[number];
  case: string;
  method: CombinationMethod;
  adapters: string[];
  weights: number[];
  kwargs: { density?: number; majority_sign_method?: "total" | "frequency"; svd_rank?: number; svd_clamp?: number };
  seed: number | null;
  seed_at: "add_weighted_adapter" | "masks";
  peft_r: number;
}
interface Fixture {
  cases: PeftCase[];
  order: Record<string, string[]>;
  bernoulli: Record<string, { n: number; p: number; mask: number[] }>;
}

function options(c: PeftCase, order: readonly string[], withClamp = true): CombineOptions {
  const k = c.kwargs;
  return {
    method: c.method,
    weights: c.weights,
    ...(k.density !== undefined ? { density: k.density } : {}),
    ...(k.majority_sign_method ? { majoritySignMethod: k.majority_sign_method } : {}),
    ...(k.svd_rank !== undefined ? { svdRank: k.svd_rank } : {}),
    ...(k.svd_clamp !== undefined && withClamp ? { svdClamp: k.svd_clamp } : {}),
    ...(c.seed !== null ? { seed: c.seed, seedAt: c.seed_at } : {}),
    moduleOrder: order,
  };
}

/** B·A as [out, in] (scaling 1 on both sides). */
function product(A: Float32Array, B: Float32Array, r: number): Float64Array {
  const nIn = A.length / r;
  const out = B.length / r;
  const P = new Float64Array(out * nIn);
  for (let i = 0; i < out; i++) for (let a = 0; a < r; a++) {
    const b = B[i * r + a]!;
    for (let j = 0; j < nIn; j++) P[i * nIn + j]! += b * A[a * nIn + j]!;
  }
  return P;
}

function maxAbsDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  expect(x.length).toBe(y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

function relFrobenius(x: ArrayLike<number>, ref: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < ref.length; i++) {
    d += (x[i]! - ref[i]!) ** 2;
    n += ref[i]! ** 2;
  }
  return Math.sqrt(d / n);
}

describe("loraport combine = PEFT add_weighted_adapter, all eleven combination types", () => {
  const tmp = tempDir("loraport-combine-");
  let fx: Fixture;
  let peft: Map<string, Tensor>;
  const adapters = new Map<string, LoraAdapter>();

  beforeAll(async () => {
    fx = runPythonJson<Fixture>(SCRIPT, [tmp.dir]);
    peft = (await readSafetensors(join(tmp.dir, "results.safetensors"))).tensors;
    for (const model of ALL_MODELS) for (const a of ["a", "b", "c", "d", "e"]) adapters.set(`${model}/${a}`, (await readPeftAdapter(join(tmp.dir, model, a))).adapter);
  }, limit(240_000));
  afterAll(() => tmp.cleanup());

  it("the fixture covers every method on both models", () => {
    for (const model of MODELS) expect(new Set(fx.cases.filter((c) => c.model === model).map((c) => c.method))).toEqual(new Set(COMBINATION_METHODS));
  });

  const peftModules = (c: PeftCase): string[] => [...peft.keys()].filter((k) => k.startsWith(`${c.model}|${c.case}|`) && k.endsWith("|A")).map((k) => k.split("|")[2]!);

  it("factor methods and cat: lora_A and lora_B equal PEFT's to 1e-6 (DARE with the same seed draws the same masks)", () => {
    const report: string[] = [];
    for (const c of fx.cases.filter((x) => !x.method.endsWith("svd"))) {
      const ours = combineAdapters(c.adapters.map((a) => adapters.get(`${c.model}/${a}`)!), options(c, fx.order[c.model]!));
      const names = peftModules(c);
      expect([...ours.modules.keys()].sort()).toEqual([...names].sort());
      let worst = 0;
      for (const name of names) {
        const m = ours.modules.get(name)!;
        expect(resolveModule(ours.config, name).scaling).toBe(1);
        const pa = peft.get(`${c.model}|${c.case}|${name}|A`)!;
        const pb = peft.get(`${c.model}|${c.case}|${name}|B`)!;
        expect(m.A.shape).toEqual(pa.shape);
        expect(m.B.shape).toEqual(pb.shape);
        const scale = Math.max(1, ...toFloat32(pa).map(Math.abs), ...toFloat32(pb).map(Math.abs));
        worst = Math.max(worst, maxAbsDiff(toFloat32(m.A), toFloat32(pa)) / scale, maxAbsDiff(toFloat32(m.B), toFloat32(pb)) / scale);
      }
      report.push(`${c.model}/${c.case} ${worst.toExponential(1)}`);
      expect(worst, `${c.model}/${c.case}`).toBeLessThanOrEqual(1e-6);
    }
    console.log(`factor methods, max |Δ| / max(1, |PEFT|): ${report.join(", ")}`);
    // Control: the same case with the seed taken as the state at the first mask draws other masks.
    const plain = fx.cases.find((x) => x.model === "linear" && x.case === "dare_ties_plainseed")!;
    const other = combineAdapters(plain.adapters.map((a) => adapters.get(`linear/${a}`)!), { ...options(plain, fx.order["linear"]!), seedAt: "masks" });
    const name = peftModules(plain)[0]!;
    expect(maxAbsDiff(toFloat32(other.modules.get(name)!.A), toFloat32(peft.get(`linear|dare_ties_plainseed|${name}|A`)!))).toBeGreaterThan(1e-3);
  });

  it("svd methods: ΔW = B·A within 1e-4 relative of PEFT's, same rank", () => {
    const report: string[] = [];
    for (const c of fx.cases.filter((x) => x.method.endsWith("svd") && x.kwargs.svd_clamp === undefined)) {
      const ours = combineAdapters(c.adapters.map((a) => adapters.get(`${c.model}/${a}`)!), options(c, fx.order[c.model]!));
      let worst = 0;
      for (const name of peftModules(c)) {
        const m = ours.modules.get(name)!;
        const pa = peft.get(`${c.model}|${c.case}|${name}|A`)!;
        const pb = peft.get(`${c.model}|${c.case}|${name}|B`)!;
        expect(m.A.shape, `${c.case} ${name}`).toEqual(pa.shape);
        expect(m.B.shape, `${c.case} ${name}`).toEqual(pb.shape);
        const r = pa.shape[0]!;
        worst = Math.max(worst, relFrobenius(product(toFloat32(m.A), toFloat32(m.B), r), product(toFloat32(pa), toFloat32(pb), r)));
      }
      report.push(`${c.model}/${c.case} ${worst.toExponential(1)}`);
      expect(worst, `${c.model}/${c.case}`).toBeLessThanOrEqual(1e-4);
    }
    console.log(`svd methods, relative Frobenius error of B·A: ${report.join(", ")}`);
  });

  it("svd_clamp: with the singular vectors' signs aligned to PEFT's, the clamped B·A is within 1e-4 relative of PEFT's", () => {
    const report: string[] = [];
    for (const c of fx.cases.filter((x) => x.kwargs.svd_clamp !== undefined)) {
      const unclamped = combineAdapters(c.adapters.map((a) => adapters.get(`${c.model}/${a}`)!), options(c, fx.order[c.model]!, false));
      for (const name of peftModules(c)) {
        const pa = toFloat32(peft.get(`${c.model}|${c.case}|${name}|A`)!);
        const pb = toFloat32(peft.get(`${c.model}|${c.case}|${name}|B`)!);
        const m = unclamped.modules.get(name)!;
        const A = toFloat32(m.A, true);
        const B = toFloat32(m.B, true);
        const r = m.A.shape[0]!;
        const nIn = A.length / r;
        for (let k = 0; k < r; k++) {
          let dot = 0;
          for (let j = 0; j < nIn; j++) dot += A[k * nIn + j]! * pa[k * nIn + j]!;
          if (dot >= 0) continue;
          for (let j = 0; j < nIn; j++) A[k * nIn + j] = -A[k * nIn + j]!;
          for (let i = 0; i < B.length / r; i++) B[i * r + k] = -B[i * r + k]!;
        }
        const clamped = clampFactors(B, A, c.kwargs.svd_clamp!);
        const err = relFrobenius(product(clamped.A, clamped.B, r), product(pa, pb, r));
        report.push(`${c.model}/${name} ${err.toExponential(1)}`);
        expect(err, `${c.model} ${name}`).toBeLessThanOrEqual(1e-4);
      }
      // The API path clamps too (entries bounded by one threshold).
      const viaApi = combineAdapters(c.adapters.map((a) => adapters.get(`${c.model}/${a}`)!), options(c, fx.order[c.model]!));
      for (const m of viaApi.modules.values()) {
        const hi = Math.max(...toFloat32(m.A).map(Math.abs), ...toFloat32(m.B).map(Math.abs));
        const unc = unclamped.modules.get([...viaApi.modules.entries()].find(([, v]) => v === m)![0])!;
        expect(hi).toBeLessThan(Math.max(...toFloat32(unc.B).map(Math.abs), ...toFloat32(unc.A).map(Math.abs)));
      }
    }
    console.log(`svd_clamp, relative Frobenius error of clamped B·A: ${report.join(", ")}`);
  });

  it("torch's CPU generator: torch.bernoulli masks equal PEFT's torch for the same seeds (incl. a seed ≥ 2³²)", () => {
    for (const [seed, { n, p, mask }] of Object.entries(fx.bernoulli)) {
      const ours = new TorchCpuGenerator(Number(seed)).bernoulliMask(n, p);
      expect([...ours], `seed ${seed}`).toEqual(mask);
    }
  });

  it("the DARE sampler keeps a fraction within 5σ of the density (binomial bound), for several densities", () => {
    const n = 200_000;
    for (const [seed, p] of [[1, 0.1], [2, 0.5], [3, 0.9]] as const) {
      const kept = new TorchCpuGenerator(seed).bernoulliMask(n, p).reduce((s, x) => s + x, 0);
      const sigma = Math.sqrt(n * p * (1 - p));
      expect(Math.abs(kept - n * p), `seed ${seed} p ${p}`).toBeLessThanOrEqual(5 * sigma);
    }
  });

  it("bad input: typed errors naming the argument", () => {
    const [a, d] = [adapters.get("linear/a")!, adapters.get("linear/d")!];
    expect(() => combineAdapters([a, d], { method: "linear" })).toThrow(AdapterError);
    expect(() => combineAdapters([a, d], { method: "linear" })).toThrow(/same rank.*4, 2/);
    expect(() => combineAdapters([a, a], { method: "dare_linear", density: 0.5 })).toThrow(ArgumentError);
    expect(() => combineAdapters([a, a], { method: "dare_linear", density: 0.5 })).toThrow(/seed/);
    expect(() => combineAdapters([a, a], { method: "ties" })).toThrow(/density/);
    expect(() => combineAdapters([a, a], { method: "ties", density: 1.5 })).toThrow(/density: a fraction in \[0, 1\], got 1.5/);
    expect(() => combineAdapters([a, a], { method: "dare_ties", density: 0, seed: 1 })).toThrow(/density must be > 0/);
    expect(() => combineAdapters([a, d], { method: "svd", svdRank: 40 })).toThrow(/svdRank: 40 exceeds/);
    expect(() => combineAdapters([a, d], { method: "svd", svdClamp: 2 })).toThrow(/svdClamp/);
    expect(() => combineAdapters([a, d], { method: "linear", svdRank: 2 })).toThrow(/svdRank: applies to the svd methods only/);
    expect(() => combineAdapters([a, d], { method: "nope" as CombinationMethod })).toThrow(/method: one of linear, cat/);
    expect(() => combineAdapters([a, d], { method: "cat", weights: [1] })).toThrow(/2 adapters but 1 weights/);
    expect(() => combineAdapters([a, a], { method: "dare_linear", density: 0.5, seed: 1, moduleOrder: ["fc1"] })).toThrow(/moduleOrder: lacks 3 adapted module/);
    expect(() => combineAdapters([a, a], { method: "dare_linear", density: 0.5, seed: -1 })).toThrow(/seed: a non-negative integer/);
    // Saved-whole tensors: identical copies are kept once, different ones refused.
    const head = (v: number): LoraAdapter => ({ ...a, extraTensors: new Map([["classifier.weight", { dtype: "F32", shape: [2, 2], data: new Float32Array(4).fill(v) }]]) });
    expect(combineAdapters([head(1), head(1)], { method: "svd" }).extraTensors.size).toBe(1);
    expect(() => combineAdapters([head(1), head(2)], { method: "cat" })).toThrow(/classifier.weight: adapters 0 and 1 both save this tensor whole, with different values/);
  });

  it("CLI: --method ties / svd --svd-rank / dare_ties --seed --module-order write PEFT's result; dare repeats for a seed; bad flags are one-line errors", async () => {
    const dirs = (names: string[]): string[] => names.map((a) => join(tmp.dir, "linear", a));
    const tiesCase = fx.cases.find((c) => c.model === "linear" && c.case === "ties_total")!;
    const tiesOut = join(tmp.dir, "cli-ties");
    const log = await runCli([registerCombine], ["combine", ...dirs(tiesCase.adapters), "--weights", tiesCase.weights.join(","), "--method", "ties", "--density", String(tiesCase.kwargs.density), "--out", tiesOut]);
    expect(log).toMatch(/combined 3 adapters \(weights 0\.7, -0\.4, 1\.3\) into 4 modules of rank 4 by ties/);
    const ties = (await readPeftAdapter(tiesOut)).adapter;
    for (const name of peftModules(tiesCase)) {
      expect(maxAbsDiff(toFloat32(ties.modules.get(name)!.A), toFloat32(peft.get(`linear|ties_total|${name}|A`)!))).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(toFloat32(ties.modules.get(name)!.B), toFloat32(peft.get(`linear|ties_total|${name}|B`)!))).toBeLessThanOrEqual(1e-6);
    }
    const svdCase = fx.cases.find((c) => c.model === "linear" && c.case === "svd_rank3")!;
    const svdOut = join(tmp.dir, "cli-svd");
    await runCli([registerCombine], ["combine", ...dirs(svdCase.adapters), "--weights", svdCase.weights.join(","), "--method", "svd", "--svd-rank", "3", "--out", svdOut]);
    const svd = (await readPeftAdapter(svdOut)).adapter;
    for (const name of peftModules(svdCase)) {
      const m = svd.modules.get(name)!;
      const err = relFrobenius(product(toFloat32(m.A), toFloat32(m.B), 3), product(toFloat32(peft.get(`linear|svd_rank3|${name}|A`)!), toFloat32(peft.get(`linear|svd_rank3|${name}|B`)!), 3));
      expect(err).toBeLessThanOrEqual(1e-4);
    }
    const dare = async (out: string): Promise<string> => runCli([registerCombine], ["combine", ...dirs(["a", "b"]), "--method", "dare_linear", "--density", "0.5", "--seed", "17", "--json", "--out", join(tmp.dir, out)]);
    expect(JSON.parse(await dare("cli-dare1"))).toMatchObject({ method: "dare_linear", seed: 17 });
    await dare("cli-dare2");
    const d1 = (await readPeftAdapter(join(tmp.dir, "cli-dare1"))).adapter;
    const d2 = (await readPeftAdapter(join(tmp.dir, "cli-dare2"))).adapter;
    for (const [name, m] of d1.modules) expect(maxAbsDiff(toFloat32(m.A), toFloat32(d2.modules.get(name)!.A))).toBe(0);
    // DARE from the CLI equals PEFT's (torch.manual_seed right before add_weighted_adapter) given the model's module order.
    const plain = fx.cases.find((c) => c.model === "linear" && c.case === "dare_ties_plainseed")!;
    const orderFile = join(tmp.dir, "order.txt");
    writeFileSync(orderFile, fx.order["linear"]!.map((n) => `base_model.model.${n}`).join("\n"));
    await runCli([registerCombine], ["combine", ...dirs(plain.adapters), "--weights", plain.weights.join(","), "--method", "dare_ties", "--density", String(plain.kwargs.density), "--seed", String(plain.seed), "--module-order", orderFile, "--out", join(tmp.dir, "cli-dare-peft")]);
    const dp = (await readPeftAdapter(join(tmp.dir, "cli-dare-peft"))).adapter;
    for (const name of peftModules(plain)) {
      expect(maxAbsDiff(toFloat32(dp.modules.get(name)!.A), toFloat32(peft.get(`linear|dare_ties_plainseed|${name}|A`)!)), name).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(toFloat32(dp.modules.get(name)!.B), toFloat32(peft.get(`linear|dare_ties_plainseed|${name}|B`)!)), name).toBeLessThanOrEqual(1e-6);
    }
    const bad = (flags: string[]): Promise<string> => runCli([registerCombine], ["combine", ...dirs(["a", "b"]), ...flags, "--out", join(tmp.dir, "cli-bad")]);
    await expect(bad(["--method", "average"])).rejects.toThrow(/--method: one of linear, cat, svd/);
    await expect(bad(["--method", "ties", "--density", "half"])).rejects.toThrow(/--density: a number, got 'half'/);
    await expect(bad(["--method", "svd", "--svd-rank", "2.5"])).rejects.toThrow(/--svd-rank: an integer, got '2.5'/);
    await expect(bad(["--method", "ties", "--density", "0.5", "--majority-sign-method", "mean"])).rejects.toThrow(/--majority-sign-method: total or frequency/);
    await expect(bad(["--method", "ties"])).rejects.toThrow(/density: ties needs a density/);
    await expect(bad(["--method", "dare_ties", "--density", "0.5", "--module-order", join(tmp.dir, "missing.txt")])).rejects.toThrow(/--module-order: cannot read/);
  });
});
