/**
 * Serving suite: 32 concurrent requests (128-token prompts, 64 new tokens, greedy, EOS ignored) spread over 1, 4 and
 * 16 distinct adapters on a Llama-shaped model, sent by a bounded load generator (at most 32 in flight) to
 * `loraport serve` (continuous batching, mixed-adapter batches) and, on the same model, adapters and load, to vLLM's
 * CPU build; beside them PEFT's mixed batch (`generate(adapter_names=...)`, one static batch) in the sidecar.
 * Throughput (new tokens/s) and request latency p50/p99. `--quick`: 2 layers, 8 requests of 16 tokens, no vLLM.
 */
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { Sidecar } from "../src/bridge/sidecar.js";
import { VllmEngine } from "../src/serving/vllm/vllm-engine.js";
import { quantile } from "./measure.js";
import type { BenchOptions, BenchResult, BenchRow, BenchRatio, BenchSuite } from "./types.js";

const ROOT = resolve(import.meta.dirname, "../..");

interface Load {
  readonly wallMs: number;
  readonly latencies: number[];
  readonly tokens: number;
}

function prompt(i: number, len: number, vocab: number): number[] {
  let s = 1000 + i;
  return Array.from({ length: len }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) % (vocab - 2)) + 1);
}

/** Fire `n` completions at an OpenAI-compatible server, at most `inFlight` at once; request i uses models[i % len]. */
async function loadGenerator(url: string, models: readonly string[], n: number, promptLen: number, maxTokens: number, vocab: number, inFlight: number): Promise<Load> {
  const latencies: number[] = [];
  let tokens = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) {
      const start = performance.now();
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: models[i % models.length], prompt: prompt(i, promptLen, vocab), max_tokens: maxTokens, temperature: 0, ignore_eos: true }),
      });
      if (!res.ok) throw new Error(`bench serve: ${url} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      const body = (await res.json()) as { usage: { completion_tokens: number } };
      tokens += body.usage.completion_tokens;
      latencies.push(performance.now() - start);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, n) }, worker));
  return { wallMs: performance.now() - t0, latencies, tokens };
}

async function startLoraport(onnx: string, adapters: readonly string[], maxBatch: number): Promise<{ url: string; stop(): Promise<void> }> {
  const args = [join(ROOT, "bin/loraport.js"), "serve", "--model", onnx, "--port", "0", "--max-batch-size", String(maxBatch), "--max-loras", String(adapters.length), "--max-queue", "1024",
    ...adapters.flatMap((a, i) => ["--adapter", `a${i}=${a}`])];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const url = await new Promise<string>((ok, fail) => {
    createInterface({ input: child.stdout }).on("line", (l) => {
      const m = /listening on (http:\/\/\S+)/.exec(l);
      if (m) ok(m[1]!);
    });
    child.once("exit", (code) => fail(new Error(`loraport serve exited (${code}): ${err}`)));
  });
  return { url, stop: () => new Promise((ok) => (child.exitCode !== null ? ok() : (child.once("exit", () => ok()), child.kill("SIGTERM")))) };
}

function rowsFor(name: string, l: Load): Record<string, number> {
  const sorted = [...l.latencies].sort((a, b) => a - b);
  return { [`${name} tokens/s`]: (l.tokens * 1000) / l.wallMs, [`${name} p50 ms`]: quantile(sorted, 0.5), [`${name} p99 ms`]: quantile(sorted, 0.99) };
}

async function run(opts: BenchOptions): Promise<BenchResult> {
  const layers = opts.quick ? 2 : 4;
  const n = opts.quick ? 8 : 32;
  const promptLen = 128;
  const newTokens = opts.quick ? 16 : 64;
  const spreads = [1, 4, 16];
  const work = mkdtempSync(join(tmpdir(), "loraport-bench-serve-"));
  const say = (m: string): void => void (opts.verbose && process.stderr.write(`bench serve: ${m}\n`));
  const rows: BenchRow[] = [];
  const ratios: BenchRatio[] = [];
  try {
    say("building the model and 16 adapters…");
    const fx = JSON.parse(execFileSync(join(ROOT, ".venv/bin/python"), [join(import.meta.dirname, "serve-fixture.py"), work, String(layers)], {
      encoding: "utf8", env: { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error" }, maxBuffer: 1 << 24,
    }).trim().split("\n").at(-1)!) as { base: string; adapters: string[]; vocab: number };
    const onnx = join(work, "onnx");
    const results: Record<string, Record<number, Load>> = { loraport: {}, peft: {}, vllm: {} };
    {
      await using sc = await Sidecar.start();
      say("exporting (adapter-inputs)…");
      await sc.exportOnnx(fx.base, onnx, { mode: "adapter-inputs", targets: ["q_proj", "v_proj"] });
      say("PEFT mixed batches (adapter_names) in the sidecar…");
      const ref = await sc.loadModel({ source: { kind: "folder", path: fx.base } });
      for (const [i, a] of fx.adapters.entries()) await ref.attachAdapter({ kind: "peft", path: a }, { adapterName: `a${i}` });
      const prompts = Array.from({ length: n }, (_, i) => prompt(i, promptLen, fx.vocab));
      await ref.hfGenerate({ prompts: prompts.slice(0, 2) as never, maxNewTokens: 2, ignoreEos: true, adapterNames: ["a0", "a1"] });
      for (const k of spreads) {
        const h = await ref.hfGenerate({ prompts: prompts as never, maxNewTokens: newTokens, ignoreEos: true, adapterNames: prompts.map((_, i) => `a${i % k}`) });
        results["peft"]![k] = { wallMs: h.totalMs, latencies: prompts.map(() => h.totalMs), tokens: h.tokens.reduce((s, t) => s + t.length, 0) };
      }
    }
    say("loraport serve…");
    const server = await startLoraport(onnx, fx.adapters, n);
    try {
      await loadGenerator(server.url, ["a0", "a1"], 4, promptLen, 4, fx.vocab, 4); // warm-up
      for (const k of spreads) results["loraport"]![k] = await loadGenerator(server.url, Array.from({ length: k }, (_, i) => `a${i}`), n, promptLen, newTokens, fx.vocab, n);
    } finally {
      await server.stop();
    }
    const vllmPython = process.env["LORAPORT_VLLM_PYTHON"] ?? join(ROOT, ".venv-vllm/bin/python");
    const withVllm = !opts.quick && existsSync(vllmPython);
    if (withVllm) {
      say("vLLM CPU (starting takes a minute or two)…");
      const v = await VllmEngine.start({ model: fx.base, python: vllmPython, maxLoraRank: 8, maxLoras: 16, maxCpuLoras: 16, env: { VLLM_CPU_KVCACHE_SPACE: "2" }, args: ["--dtype", "float32", "--enforce-eager", "--max-model-len", "512"] });
      try {
        for (const [i, a] of fx.adapters.entries()) await v.loadAdapter(`a${i}`, a);
        await loadGenerator(v.url, ["a0", "a1"], 4, promptLen, 4, fx.vocab, 4);
        for (const k of spreads) results["vllm"]![k] = await loadGenerator(v.url, Array.from({ length: k }, (_, i) => `a${i}`), n, promptLen, newTokens, fx.vocab, n);
      } finally {
        await v.close();
      }
    }
    for (const k of spreads) {
      rows.push({ name: `${n} requests over ${k} adapter${k > 1 ? "s" : ""}`, unit: "tok/s · ms", values: {
        ...rowsFor("loraport", results["loraport"]![k]!), "PEFT batch tokens/s": (results["peft"]![k]!.tokens * 1000) / results["peft"]![k]!.wallMs,
        ...(withVllm ? rowsFor("vLLM", results["vllm"]![k]!) : {}),
      } });
    }
    const tput = (who: string, k: number): number => (results[who]![k]!.tokens * 1000) / results[who]![k]!.wallMs;
    ratios.push({ name: "loraport wall time, 16 adapters / 1 adapter", ratio: results["loraport"]![16]!.wallMs / results["loraport"]![1]!.wallMs, target: 1.3 });
    for (const k of spreads) ratios.push({ name: `loraport / PEFT adapter_names throughput, ${k} adapter(s)`, ratio: tput("loraport", k) / tput("peft", k), target: 2, higherIsBetter: true });
    if (withVllm) for (const k of spreads) ratios.push({ name: `loraport / vLLM CPU throughput, ${k} adapter(s)`, ratio: tput("loraport", k) / tput("vllm", k), target: 1, higherIsBetter: true, note: "goal ≥ 1" });
    return {
      suite: "serve", rows, ratios,
      conditions: {
        model: `Llama shapes: ${layers} layers × 512, GQA 8/2, head 64, vocab 320, random weights; 16 PEFT adapters r 8 on q/v`,
        load: `${n} requests, ${promptLen}-token prompts, ${newTokens} new tokens, greedy, EOS ignored, ≤ ${n} in flight (HTTP, non-streaming)`,
        peft: "one static batch of all requests through generate(adapter_names=...) in the sidecar: its latency is the batch's",
        vllm: withVllm ? "vllm-cpu 0.32, float32, eager, max-loras 16" : "not run (--quick, or no .venv-vllm)",
      },
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export const serveSuite: BenchSuite = { name: "serve", run };
