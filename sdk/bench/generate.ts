/**
 * Generation suite (CPU, the same thread count on both sides): decode time per token and time to first token for
 * batch 1 and 8 (128-token prompts, 128 new tokens, greedy, EOS ignored) on GPT-2-small- and Llama-shaped random
 * models with a PEFT adapter (r 16): loraport (KV cache in the ORT worker; adapter-inputs and merged exports) vs
 * transformers + PEFT `generate` in the sidecar (hfGenerate). Then loraport's per-token cost at 32, 256 and 1024 tokens
 * of context. Implementations alternate within each round, so a busy spell on a shared machine hits all of them.
 * `--quick`: 2 layers, 32 new tokens, one round.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readPeftAdapter } from "../src/adapter/peft-io.js";
import { Sidecar } from "../src/bridge/sidecar.js";
import { generateBatch } from "../src/generation/generate.js";
import { LoraModel } from "../src/runtime/lora-model.js";
import type { BenchOptions, BenchResult, BenchRow, BenchRatio, BenchSuite } from "./types.js";

const ROOT = resolve(import.meta.dirname, "../..");

interface ModelFx {
  base: string;
  adapter: string;
  maxPositions: number;
}

interface Timing {
  ttftMs: number;
  /** Decode time per step after the first token (the whole batch's step). */
  perTokenMs: number;
}

function prompts(batch: number, len: number, vocab: number, seed: number): number[][] {
  let s = seed;
  const next = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) % (vocab - 1)) + 0;
  return Array.from({ length: batch }, () => Array.from({ length: len }, next));
}

function perToken(ttftMs: number, totalMs: number, n: number): number {
  return (totalMs - ttftMs) / Math.max(n - 1, 1);
}

async function timeOrt(model: LoraModel, ps: number[][], adapter: string | null, n: number): Promise<Timing> {
  const [r] = await generateBatch(model, ps, { adapter, maxNewTokens: n, temperature: 0, ignoreEos: true }, () => undefined);
  return { ttftMs: r!.timings.ttftMs, perTokenMs: perToken(r!.timings.ttftMs, r!.timings.totalMs, n) };
}

/** loraport's decode cost per token with `context` tokens already in the cache (batch 1). */
async function perTokenAt(model: LoraModel, context: number, vocab: number, steps: number): Promise<number> {
  const [p] = prompts(1, context, vocab, 7);
  const { batch, logits } = await model.prefill({ inputIds: p! }, {});
  let token = argmax(logits.data as Float32Array);
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) token = argmax((await model.decode(batch, [token])).logits.data as Float32Array);
  const ms = (performance.now() - t0) / steps;
  await model.release(batch);
  return ms;
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

async function run(opts: BenchOptions): Promise<BenchResult> {
  const newTokens = opts.quick ? 32 : 128;
  const promptLen = 128;
  const rounds = opts.quick ? 1 : 2;
  const threads = Math.min(availableParallelism(), 8);
  const sessionOpts = { executionProviders: ["cpu" as const], intraOpNumThreads: threads, interOpNumThreads: 1 };
  const work = mkdtempSync(join(tmpdir(), "loraport-bench-generate-"));
  const say = (m: string): void => void (opts.verbose && process.stderr.write(`bench generate: ${m}\n`));
  const rows: BenchRow[] = [];
  const ratios: BenchRatio[] = [];
  const conditions: Record<string, string> = {};
  try {
    say("building the models (random weights) and their adapters…");
    const fx = JSON.parse(execFileSync(join(ROOT, ".venv/bin/python"), [join(import.meta.dirname, "generate-fixture.py"), work, opts.quick ? "1" : "0"], {
      encoding: "utf8", env: { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error" }, maxBuffer: 1 << 24,
    }).trim().split("\n").at(-1)!) as Record<string, ModelFx>;
    await using sc = await Sidecar.start({ env: { OMP_NUM_THREADS: String(threads) } });
    for (const [name, m] of Object.entries(fx)) {
      say(`${name}: exporting adapter-inputs and merged (a minute or two each)…`);
      const aiDir = join(work, name, "onnx-ai");
      const mergedDir = join(work, name, "onnx-merged");
      await sc.exportOnnx(m.base, aiDir, { mode: "adapter-inputs" });
      await sc.exportOnnx(m.base, mergedDir, { mode: "merged", adapter: m.adapter });
      const ref = await sc.loadModel({ source: { kind: "folder", path: m.base } });
      await ref.attachAdapter({ kind: "peft", path: m.adapter });
      const ai = await LoraModel.load(aiDir, sessionOpts);
      await ai.registerAdapter("a", (await readPeftAdapter(m.adapter)).adapter);
      const merged = await LoraModel.load(mergedDir, sessionOpts);
      const vocab = Number(ai.manifest.config["vocab_size"]);
      for (const batch of [1, 8]) {
        const ps = prompts(batch, promptLen, vocab, 1 + batch);
        const best = { peft: { ttftMs: Infinity, perTokenMs: Infinity }, ai: { ttftMs: Infinity, perTokenMs: Infinity }, merged: { ttftMs: Infinity, perTokenMs: Infinity } };
        const keep = (k: keyof typeof best, t: Timing): void => void (best[k] = { ttftMs: Math.min(best[k].ttftMs, t.ttftMs), perTokenMs: Math.min(best[k].perTokenMs, t.perTokenMs) });
        await timeOrt(ai, ps, "a", 4); // warm-up: ORT's arena and thread pool settle over the first runs
        await timeOrt(merged, ps, null, 4);
        for (let r = 0; r < rounds; r++) {
          say(`${name} batch ${batch}: round ${r + 1}/${rounds}`);
          const h = await ref.hfGenerate({ prompts: ps as never, maxNewTokens: newTokens, ignoreEos: true });
          keep("peft", { ttftMs: h.ttftMs, perTokenMs: perToken(h.ttftMs, h.totalMs, newTokens) });
          keep("ai", await timeOrt(ai, ps, "a", newTokens));
          keep("merged", await timeOrt(merged, ps, null, newTokens));
        }
        rows.push({ name: `${name} batch ${batch}: time per token`, unit: "ms", values: { "torch + PEFT generate": best.peft.perTokenMs, "loraport adapter-inputs": best.ai.perTokenMs, "loraport merged": best.merged.perTokenMs } });
        rows.push({ name: `${name} batch ${batch}: time to first token`, unit: "ms", values: { "torch + PEFT generate": best.peft.ttftMs, "loraport adapter-inputs": best.ai.ttftMs, "loraport merged": best.merged.ttftMs } });
        ratios.push({ name: `${name} b${batch} time per token, loraport adapter-inputs / torch+PEFT`, ratio: best.ai.perTokenMs / best.peft.perTokenMs, target: 0.67 });
        ratios.push({ name: `${name} b${batch} time per token, loraport merged / torch+PEFT`, ratio: best.merged.perTokenMs / best.peft.perTokenMs, target: 0.67 });
        ratios.push({ name: `${name} b${batch} time per token, adapter-inputs / merged`, ratio: best.ai.perTokenMs / best.merged.perTokenMs, target: 1.2 });
      }
      const contexts = [32, 256, Math.min(1024, m.maxPositions - 16)];
      const at: Record<string, number> = {};
      for (const c of contexts) at[`context ${c}`] = await perTokenAt(ai, c, vocab, opts.quick ? 4 : 12);
      rows.push({ name: `${name} batch 1: loraport adapter-inputs time per token by context`, unit: "ms", values: at });
      const first = at[`context ${contexts[0]}`]!;
      const last = at[`context ${contexts[2]}`]!;
      ratios.push({ name: `${name} time per token at ${contexts[2]} / at ${contexts[0]} tokens of context`, ratio: last / first, note: "flat = near 1; attention over the cache grows linearly, the projections do not" });
      await ai.close();
      await merged.close();
      await ref.release();
    }
    conditions["models"] = `GPT-2 small shapes (12 × 768, vocab 50257) and Llama shapes (8 × 512, GQA 8/2, vocab 32000)${opts.quick ? ", cut to 2 layers (--quick)" : ""}; random weights; PEFT r 16 on the default targets`;
    conditions["load"] = `${promptLen}-token prompts, ${newTokens} new tokens, greedy, EOS ignored; best of ${rounds} alternating rounds`;
    conditions["threads"] = `${threads} (ORT intra-op; torch OMP_NUM_THREADS in the sidecar)`;
    return { suite: "generate", rows, ratios, conditions };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export const generateSuite: BenchSuite = { name: "generate", run };
