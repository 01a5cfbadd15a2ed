/**
 * Generation parity: loraport's KV-cache generation (ONNX Runtime in the worker) vs transformers + PEFT
 * `generate(do_sample=False)` computed in the same run, on tiny GPT-2, Llama (GQA), Qwen2 and Mistral (GQA to one
 * KV head, sliding window) models built from configs; both export modes; a batch of 3 prompts of different lengths
 * (left-padded); ≥ 32 new tokens; logits of every step within 1e-4; rank 0 equals the base; KV-cache decoding equals
 * a full recompute; EOS stops rows as transformers does.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { generateBatch } from "../../src/generation/generate.js";
import type { GenerationResult } from "../../src/generation/generate-options.js";
import { LoraModel, lastLogits } from "../../src/runtime/lora-model.js";
import { REPO_ROOT, runPython, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const TOL = 1e-4;
const NEW_TOKENS = 32;
const FAMILIES = ["gpt2", "llama", "qwen2", "mistral"] as const;
const PROMPTS = [
  [5, 9, 17, 33, 2],
  [12, 99, 45, 8, 76, 31, 22, 5, 118],
  [7, 3, 60],
];

interface FamilyRef {
  base: string;
  adapter: string;
  inputs: string;
  merged: string;
  baseGreedy: number[][];
  adapterGreedy: { tokens: number[][]; logits: number[][][] };
  adapterEos: number[][];
}

let tmp: ReturnType<typeof tempDir>;
let ref: Record<string, FamilyRef>;

beforeAll(() => {
  tmp = tempDir("loraport-generate-");
  const spec = join(tmp.dir, "spec.json");
  writeFileSync(spec, JSON.stringify({ families: FAMILIES, prompts: PROMPTS, newTokens: NEW_TOKENS, vocab: 320 }));
  const script = readFileSync(join(REPO_ROOT, "sdk/test/generation/fixtures/generate_reference.py"), "utf8");
  const out = runPython(script, [spec, tmp.dir], { timeoutMs: 1_200_000 }).trim().split("\n");
  ref = JSON.parse(out[out.length - 1]!) as Record<string, FamilyRef>;
}, limit(1_200_000));

afterAll(() => tmp?.cleanup());

async function greedy(model: LoraModel, adapter: string | null, opts: { ignoreEos?: boolean } = {}): Promise<GenerationResult[]> {
  return generateBatch(model, PROMPTS, { adapter, maxNewTokens: NEW_TOKENS, temperature: 0, ignoreEos: opts.ignoreEos ?? true, outputLogits: true }, () => undefined);
}

function maxLogitErr(got: readonly Float32Array[], want: readonly number[][]): { abs: number; step: number; at: number } {
  let abs = 0, step = -1, at = -1;
  expect(got.length).toBe(want.length);
  got.forEach((row, s) => {
    row.forEach((v, i) => {
      const d = Math.abs(v - want[s]![i]!);
      if (d > abs) [abs, step, at] = [d, s, i];
    });
  });
  return { abs, step, at };
}

describe.each(FAMILIES)("%s", (family) => {
  it("adapter-inputs export: greedy tokens and every step's logits equal PEFT generate; rank 0 equals the base", async () => {
    const r = ref[family]!;
    await using model = await LoraModel.load(r.inputs);
    await model.registerAdapter("a", (await readPeftAdapter(r.adapter)).adapter);
    const withAdapter = await greedy(model, "a");
    for (const [b, res] of withAdapter.entries()) {
      expect(res.tokens.length).toBeGreaterThanOrEqual(NEW_TOKENS);
      expect(res.tokens, `${family} row ${b} tokens`).toEqual(r.adapterGreedy.tokens[b]);
      const err = maxLogitErr(res.logits!, r.adapterGreedy.logits[b]!);
      console.log(`${family} adapter-inputs row ${b}: max |Δlogit| ${err.abs.toExponential(2)} (step ${err.step}, id ${err.at})`);
      expect(err.abs).toBeLessThan(TOL);
    }
    const base = await greedy(model, null);
    expect(base.map((x) => x.tokens)).toEqual(r.baseGreedy);
    // The adapter changes the output, so equality above is not vacuous.
    expect(r.baseGreedy).not.toEqual(r.adapterGreedy.tokens);
  });

  it("merged export: greedy tokens and logits equal PEFT generate; EOS stops rows as transformers does", async () => {
    const r = ref[family]!;
    await using model = await LoraModel.load(r.merged);
    const res = await greedy(model, null);
    for (const [b, x] of res.entries()) {
      expect(x.tokens, `${family} merged row ${b}`).toEqual(r.adapterGreedy.tokens[b]);
      const err = maxLogitErr(x.logits!, r.adapterGreedy.logits[b]!);
      console.log(`${family} merged row ${b}: max |Δlogit| ${err.abs.toExponential(2)} (step ${err.step}, id ${err.at})`);
      expect(err.abs).toBeLessThan(TOL);
    }
    const eos = await greedy(model, null, { ignoreEos: false });
    expect(eos.map((x) => x.tokens)).toEqual(r.adapterEos);
    for (const x of eos) expect(x.finishReason).toBe(x.tokens.length < NEW_TOKENS ? "stop" : "length");
  });

  it("KV-cache decoding equals a full recompute of each sequence", async () => {
    const r = ref[family]!;
    await using model = await LoraModel.load(r.merged);
    const res = await greedy(model, null);
    let worst = 0;
    for (const [b, x] of res.entries()) {
      // Unpadded rows alone through the plain forward: positions 0..n-1, no cache.
      for (const s of [0, 7, NEW_TOKENS - 1]) {
        const seq = [...PROMPTS[b]!, ...x.tokens.slice(0, s)];
        const full = lastLogits(await model.run({ inputIds: seq }));
        full.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - x.logits![s]![i]!))));
      }
    }
    console.log(`${family}: KV cache vs full recompute max |Δlogit| ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(TOL);
  });
});
