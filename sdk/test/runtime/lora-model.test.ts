/**
 * LoraModel parity: ONNX Runtime (onnxruntime-node, in the worker thread) vs PyTorch + PEFT run in Python in the
 * same test run. Adapters are read from PEFT folders by loraport's own reader; several ranks swap in one session;
 * rank 0 equals the base; merged export; concurrency; base/adapter mismatch errors.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { AdapterError, RuntimeError, ShapeMismatchError, UnsupportedFeatureError } from "../../src/errors.js";
import { tensor } from "../../src/tensor/index.js";
import { LoraModel } from "../../src/runtime/lora-model.js";
import { cudaUnavailableReason } from "../../src/runtime/providers.js";
import { runPython, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const TOL = 1e-4;
/** scripts/gpu-check.sh sets LORAPORT_EP=cuda to run the same parity checks on the CUDA provider. */
const EP = (process.env["LORAPORT_EP"] ?? "cpu") as "cpu" | "cuda";
const IDS = [
  [1, 5, 9, 17, 33, 2, 64, 100, 7, 3],
  [12, 0, 99, 45, 8, 76, 31, 22, 5, 118],
];
/** A batch padded on the right (row 0) and on the left (row 1), as a server batching requests of mixed lengths. */
const PADDED_MASK = [
  [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
  [0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
];

interface Fixture {
  base: string;
  baseLogits: number[];
  adapterInputs: string;
  merged?: string;
  paddedBaseLogits: number[];
  adapters: Record<string, { dir: string; r: number; logits: number[]; paddedLogits: number[] }>;
}

const SPEC = {
  ids: IDS,
  paddedMask: PADDED_MASK,
  models: {
    // The targets cover attention and MLP projections of each family (sidecar/tests/test_onnx_export.py relies on
    // this file for adapter-inputs parity); Llama's second adapter scales by alpha/r = 0.5.
    gpt2: { family: "gpt2", targets: ["c_attn", "c_proj", "c_fc"], adapters: [[4, 8, false], [8, 16, true], [2, 4, false]], merged: true },
    llama: { family: "llama", targets: ["q_proj", "v_proj", "gate_proj", "down_proj"], adapters: [[4, 8, false], [6, 3, false]] },
    // The second RoBERTa adapter is SEQ_CLS: PEFT saves its classifier whole, fed through the graph's head inputs.
    roberta: { family: "roberta", targets: ["query", "value"], adapters: [[8, 16, false], [4, 8, false, "SEQ_CLS"]] },
  },
};

let tmp: ReturnType<typeof tempDir>;
let fx: Record<string, Fixture>;

function maxErr(got: Float32Array, want: readonly number[]): { abs: number; rel: number; at: number } {
  expect(got.length).toBe(want.length);
  let abs = 0, rel = 0, at = -1;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (d > abs) { abs = d; at = i; }
    rel = Math.max(rel, d / Math.max(Math.abs(want[i]!), 1e-6));
  }
  return { abs, rel, at };
}

beforeAll(() => {
  tmp = tempDir("loraport-runtime-");
  const code = readFileSync(join(import.meta.dirname, "fixtures.py"), "utf8");
  const out = runPython(code, [tmp.dir, JSON.stringify(SPEC)]).trim().split("\n");
  fx = JSON.parse(out[out.length - 1]!) as Record<string, Fixture>;
}, limit(300_000));

afterAll(() => tmp?.cleanup());

// (An F16 checkpoint's export is checked in sidecar/tests/test_onnx_export.py; fixtures.py still supports "f16": true.)
describe.each(["gpt2", "llama", "roberta"])("adapter-inputs parity: %s", (name) => {
  it("matches PyTorch + PEFT for several adapters in one session, rank 0 for the base, and padded batches", async () => {
    const f = fx[name]!;
    const model = await LoraModel.load(f.adapterInputs, { executionProviders: [EP] });
    try {
      expect(model.provider).toBe(EP);
      for (const [key, a] of Object.entries(f.adapters)) await model.registerAdapter(key, (await readPeftAdapter(a.dir)).adapter);
      const order = [...Object.keys(f.adapters), null, ...Object.keys(f.adapters).reverse()];
      for (const key of order) {
        const res = await model.run({ inputIds: IDS }, { adapter: key });
        const want = key === null ? f.baseLogits : f.adapters[key]!.logits;
        const e = maxErr(res.logits.data as Float32Array, want);
        console.log(`${name} ${key === null ? "base (rank 0)" : `${key} r=${f.adapters[key]!.r}`}: max abs ${e.abs.toExponential(2)} rel ${e.rel.toExponential(2)} (at ${e.at})`);
        expect(e.abs).toBeLessThanOrEqual(TOL);
        expect(res.provider).toBe(EP);
        // Each adapter really changes the output, far beyond the error, so the check above can fail.
        if (key !== null) expect(maxErr(Float32Array.from(want), f.baseLogits).abs).toBeGreaterThan(Math.max(1e-4, 100 * e.abs));
      }
      // Padded batches: equal at every unpadded position (a padded position's logits are undefined: they differ
      // between PyTorch's attention kernels and ORT's, and no caller reads them). Sequence classification has one
      // row of logits per sequence, all of which count.
      for (const key of [null, ...Object.keys(f.adapters)]) {
        const res = await model.run({ inputIds: IDS, attentionMask: PADDED_MASK }, { adapter: key });
        const got = res.logits.data as Float32Array;
        const want = key === null ? f.paddedBaseLogits : f.adapters[key]!.paddedLogits;
        const perToken = res.logits.shape.length === 3;
        const width = perToken ? res.logits.shape[2]! : got.length;
        const keep = (i: number) => !perToken || PADDED_MASK.flat()[Math.floor(i / width)] === 1;
        const idx = [...got.keys()].filter(keep);
        const e = maxErr(Float32Array.from(idx, (i) => got[i]!), idx.map((i) => want[i]!));
        console.log(`${name} padded ${key ?? "base"}: max abs ${e.abs.toExponential(2)} rel ${e.rel.toExponential(2)} over ${idx.length} logits`);
        expect(e.abs).toBeLessThanOrEqual(TOL);
        // The mask changes the reference by more than the tolerance (left padding changes what row 1 attends to),
        // so a graph that ignored it would fail the check above.
        const unpadded = key === null ? f.baseLogits : f.adapters[key]!.logits;
        expect(maxErr(Float32Array.from(idx, (i) => want[i]!), idx.map((i) => unpadded[i]!)).abs).toBeGreaterThan(TOL);
      }
      // The adapter really changes the output (far beyond the tolerance), so the check above can fail.
      const first = Object.values(f.adapters)[0]!;
      expect(maxErr(Float32Array.from(first.logits), f.baseLogits).abs).toBeGreaterThan(1e-4);
    } finally {
      await model.close();
    }
  });
});

describe("merged export", () => {
  it("matches PyTorch + PEFT with the adapter merged, and refuses adapters", async () => {
    const f = fx["gpt2"]!;
    const model = await LoraModel.load(f.merged!, { executionProviders: [EP] });
    try {
      const e = maxErr((await model.run({ inputIds: IDS })).logits.data as Float32Array, f.adapters["a0"]!.logits);
      console.log(`gpt2 merged: max abs ${e.abs.toExponential(2)} rel ${e.rel.toExponential(2)}`);
      expect(e.abs).toBeLessThanOrEqual(TOL);
      await expect(model.registerAdapter("x", (await readPeftAdapter(f.adapters["a1"]!.dir)).adapter)).rejects.toThrow(AdapterError);
    } finally {
      await model.close();
    }
  });
});

describe("serving behaviour", () => {
  it("keeps the event loop free and answers interleaved concurrent requests with the right adapter", async () => {
    const f = fx["gpt2"]!;
    const model = await LoraModel.load(f.adapterInputs, { executionProviders: [EP] });
    try {
      for (const [key, a] of Object.entries(f.adapters)) await model.registerAdapter(key, (await readPeftAdapter(a.dir)).adapter);
      const keys = [...Object.keys(f.adapters), null];
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const jobs = Array.from({ length: 60 }, (_, i) => keys[i % keys.length]!);
      const results = await Promise.all(jobs.map((k) => model.run({ inputIds: IDS }, { adapter: k })));
      clearInterval(timer);
      for (const [i, res] of results.entries()) {
        const k = jobs[i]!;
        expect(res.adapter).toBe(k);
        expect(maxErr(res.logits.data as Float32Array, k === null ? f.baseLogits : f.adapters[k]!.logits).abs).toBeLessThanOrEqual(TOL);
      }
      expect(ticks).toBeGreaterThan(0);

      // One long run (128 × 64 tokens): a 1 ms timer keeps firing while it computes. Were ORT's synchronous run on
      // this thread, the timer could fire at most once or twice around it.
      const big = Array.from({ length: 128 }, (_, b) => Array.from({ length: 64 }, (_, t) => (b * 7 + t * 3) % 128));
      let during = 0;
      const iv = setInterval(() => during++, 1);
      const long = await model.run({ inputIds: big }, { adapter: "a0" });
      clearInterval(iv);
      console.log(`long run ${long.ms.toFixed(1)} ms in the worker; 1 ms timer fired ${during} times meanwhile`);
      expect(long.ms).toBeGreaterThan(20);
      expect(during).toBeGreaterThanOrEqual(Math.max(5, Math.floor(long.ms / 10)));
    } finally {
      await model.close();
    }
  });

  it("finishes runs already queued when closed, then refuses new ones", async () => {
    const f = fx["gpt2"]!;
    const model = await LoraModel.load(f.adapterInputs, { executionProviders: [EP] });
    const pending = Array.from({ length: 5 }, () => model.run({ inputIds: IDS }));
    await model.close();
    for (const r of await Promise.allSettled(pending)) {
      expect(r.status).toBe("fulfilled");
      if (r.status === "fulfilled") expect(maxErr(r.value.logits.data as Float32Array, f.baseLogits).abs).toBeLessThanOrEqual(TOL);
    }
    await expect(model.run({ inputIds: IDS })).rejects.toThrow(/closed/);
  });

  it("refuses an adapter made for another base, naming the module", async () => {
    const model = await LoraModel.load(fx["gpt2"]!.adapterInputs, { executionProviders: [EP] });
    try {
      const llamaAdapter = (await readPeftAdapter(fx["llama"]!.adapters["a0"]!.dir)).adapter;
      await expect(model.registerAdapter("wrong", llamaAdapter)).rejects.toThrow(ShapeMismatchError);
      await expect(model.registerAdapter("wrong", llamaAdapter)).rejects.toThrow(/model\.layers\.0\./);
      await expect(model.run({ inputIds: [1, 2] }, { adapter: "nope" })).rejects.toThrow(AdapterError);
      // Whole tensors (modules_to_save, e.g. a classifier head) cannot be fed to an adapter-inputs graph: refused, pointing to merged.
      const gptAdapter = (await readPeftAdapter(fx["gpt2"]!.adapters["a0"]!.dir)).adapter;
      const withHead = { ...gptAdapter, extraTensors: new Map([["lm_head.weight", tensor("F32", [1], new Float32Array(1))]]) };
      await expect(model.registerAdapter("head", withHead)).rejects.toThrow(UnsupportedFeatureError);
      await expect(model.registerAdapter("head", withHead)).rejects.toThrow(/--mode merged/);
      await expect(model.run({ inputIds: [1, 100000] })).rejects.toThrow(/inputIds\[0\]\[1\]/);
    } finally {
      await model.close();
    }
  });

  it("says why when CUDA is asked for but unavailable", async () => {
    const why = cudaUnavailableReason();
    if (why === undefined) return; // a GPU machine: scripts/gpu-check.sh covers the CUDA path
    await expect(LoraModel.load(fx["gpt2"]!.adapterInputs, { executionProviders: ["cuda"] })).rejects.toThrow(RuntimeError);
    await expect(LoraModel.load(fx["gpt2"]!.adapterInputs, { executionProviders: ["cuda"] })).rejects.toThrow(/cuda.*unavailable/);
    const m = await LoraModel.load(fx["gpt2"]!.adapterInputs, { executionProviders: ["cuda", "cpu"] });
    expect(m.provider).toBe("cpu");
    expect(m.providerNote).toMatch(/CUDA was asked for but is unavailable/);
    await m.close();
  });
});
