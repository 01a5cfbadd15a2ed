/**
 * ONNX Runtime suite (CPU, same thread count everywhere): forward latency for batch 1 × 128 tokens on a
 * GPT-2-small-shaped model (12 layers, 768 wide, random weights) — ORT merged vs ORT adapter-inputs vs PyTorch
 * eager timed inside Python — and the cost of switching adapters vs creating a new session.
 * PyTorch and ORT are timed in interleaved rounds (best of each), so a busy spell on a shared machine hits both.
 * `--quick`: 2 layers, 64 tokens. `LORAPORT_EP=cuda` runs ORT on the CUDA provider (scripts/gpu-check.sh).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { readPeftAdapter } from "../src/adapter/peft-io.js";
import { LoraModel, lastLogits } from "../src/runtime/lora-model.js";
import type { BenchOptions, BenchResult, BenchSuite } from "./types.js";

const ROOT = resolve(import.meta.dirname, "../..");

interface Fixture {
  ids: number[];
  refLastLogits: number[];
  exportSeconds: number;
  torchThreads: number;
}

/** The Python side: builds and exports, then answers timing requests line by line. */
function startFixture(work: string, layers: number, threads: number, seq: number): { first: Promise<Fixture>; time(what: "torch" | "peft", n: number): Promise<number>; quit(): void } {
  const py = spawn(join(ROOT, ".venv/bin/python"), [join(import.meta.dirname, "ort-fixture.py"), work, String(layers), String(threads), String(seq), "3"], {
    env: { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error" }, stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  py.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const waiting: Array<{ resolve(line: string): void; reject(e: Error): void }> = [];
  createInterface({ input: py.stdout }).on("line", (line) => {
    if (line.trim().startsWith("{")) waiting.shift()?.resolve(line);
  });
  py.on("exit", (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`ort-fixture.py exited (${code}): ${stderr}`));
  });
  const next = (): Promise<string> => new Promise((res, rej) => waiting.push({ resolve: res, reject: rej }));
  return {
    first: next().then((l) => JSON.parse(l) as Fixture),
    time: async (what, n) => {
      const p = next();
      py.stdin.write(`${what} ${n}\n`);
      return (JSON.parse(await p) as { best: number }).best;
    },
    quit: () => py.stdin.end("quit\n"),
  };
}

/** Best of n runs, worker-side time (inside session.run), plus the largest feed-assembly time seen. */
async function timeOrt(model: LoraModel, ids: number[], adapters: (string | null)[], n: number): Promise<{ worker: number; e2e: number; prep: number }> {
  await model.run({ inputIds: ids }, { adapter: adapters[0]! });
  const w: number[] = [], e: number[] = [], p: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await model.run({ inputIds: ids }, { adapter: adapters[i % adapters.length]! });
    e.push(performance.now() - t0);
    w.push(r.ms);
    p.push(r.prepMs);
  }
  return { worker: Math.min(...w), e2e: Math.min(...e), prep: Math.max(...p) };
}

async function run(opts: BenchOptions): Promise<BenchResult> {
  const layers = opts.quick ? 2 : 12;
  const seq = opts.quick ? 64 : 128;
  const rounds = opts.quick ? 3 : 5;
  const perRound = 3;
  const threads = Math.min(availableParallelism(), 8);
  const ep = (process.env["LORAPORT_EP"] ?? "cpu") as "cpu" | "cuda";
  const sessionOpts = { executionProviders: [ep], intraOpNumThreads: threads, interOpNumThreads: 1 };
  const work = mkdtempSync(join(tmpdir(), "loraport-bench-ort-"));
  const py = startFixture(work, layers, threads, seq);
  try {
    if (opts.verbose) process.stderr.write(`bench ort: building a GPT-2-shaped ${layers}-layer model and exporting it (${threads} threads)…\n`);
    const fx = await py.first;

    // New-session cost: what switching adapters would cost without adapter inputs.
    const loads: number[] = [];
    let merged: LoraModel | undefined;
    for (let i = 0; i < 3; i++) {
      await merged?.close();
      const t0 = performance.now();
      merged = await LoraModel.load(join(work, "merged"), sessionOpts);
      loads.push(performance.now() - t0);
    }
    const mergedModel = merged!;
    const ai = await LoraModel.load(join(work, "ai"), sessionOpts);
    const a1 = (await readPeftAdapter(join(work, "adapter"))).adapter;
    const a2 = (await readPeftAdapter(join(work, "adapter2"))).adapter;
    const registers: number[] = [];
    for (let i = 0; i < 4; i++) {
      const t0 = performance.now();
      await ai.registerAdapter(i % 2 ? "b" : "a", i % 2 ? a2 : a1);
      registers.push(performance.now() - t0);
    }

    const best = { torch: Infinity, peft: Infinity, merged: Infinity, ai: Infinity, rank0: Infinity, mergedE2e: Infinity, aiE2e: Infinity, switch: 0 };
    for (let r = 0; r < rounds; r++) {
      if (opts.verbose) process.stderr.write(`bench ort: round ${r + 1}/${rounds}\n`);
      best.torch = Math.min(best.torch, await py.time("torch", perRound));
      best.peft = Math.min(best.peft, await py.time("peft", perRound));
      const m = await timeOrt(mergedModel, fx.ids, [null], perRound);
      const a = await timeOrt(ai, fx.ids, ["a"], perRound);
      const alt = await timeOrt(ai, fx.ids, ["a", "b"], perRound);
      const z = await timeOrt(ai, fx.ids, [null], perRound);
      best.merged = Math.min(best.merged, m.worker);
      best.mergedE2e = Math.min(best.mergedE2e, m.e2e);
      best.ai = Math.min(best.ai, a.worker);
      best.aiE2e = Math.min(best.aiE2e, a.e2e);
      best.rank0 = Math.min(best.rank0, z.worker);
      best.switch = Math.max(best.switch, alt.prep);
    }
    const mergedErr = maxAbs(lastLogits(await mergedModel.run({ inputIds: fx.ids })), fx.refLastLogits);
    const aiErr = maxAbs(lastLogits(await ai.run({ inputIds: fx.ids }, { adapter: "a" })), fx.refLastLogits);
    await mergedModel.close();
    await ai.close();

    const register = Math.min(...registers);
    const load = Math.min(...loads);
    return {
      suite: "ort",
      conditions: {
        model: `GPT-2 shapes, ${layers} layers, 768 wide, vocab 50257, random weights`, tokens: `1 × ${seq}`, threads: `${threads} (torch ${fx.torchThreads}, ORT intra-op)`, "ORT provider": ep,
        adapter: "r 16 on c_attn (second adapter r 8)", timing: `best of ${rounds} interleaved rounds × ${perRound} runs`,
        "parity vs PEFT (last position, max abs)": `adapter-inputs ${aiErr.toExponential(1)}, merged ${mergedErr.toExponential(1)}`,
        "export (adapter-inputs)": `${fx.exportSeconds.toFixed(1)} s`,
      },
      rows: [
        { name: "forward latency", unit: "ms", values: { "torch eager": best.torch, "torch PEFT unmerged": best.peft, "ORT merged": best.merged, "ORT adapter-inputs": best.ai, "ORT adapter-inputs rank 0": best.rank0 } },
        { name: "forward incl. worker round trip", unit: "ms", values: { "ORT merged": best.mergedE2e, "ORT adapter-inputs": best.aiE2e } },
        { name: "switch adapter per request (feed assembly, worst)", unit: "ms", values: { "ORT adapter-inputs": best.switch } },
        { name: "register a new adapter (factors to the worker)", unit: "ms", values: { "ORT adapter-inputs": register } },
        { name: "create a new session (LoraModel.load)", unit: "ms", values: { "ORT merged": load } },
      ],
      ratios: [
        { name: "ORT merged / torch eager", ratio: best.merged / best.torch, target: 0.8 },
        { name: "ORT adapter-inputs / ORT merged", ratio: best.ai / best.merged, target: 1.2 },
        { name: "adapter switch / new session", ratio: best.switch / load, note: `switch ${best.switch.toFixed(3)} ms (target < 1 ms); registering a new adapter ${register.toFixed(2)} ms; new session ${load.toFixed(0)} ms` },
      ],
    };
  } finally {
    py.quit();
    rmSync(work, { recursive: true, force: true });
  }
}

function maxAbs(a: Float32Array, b: readonly number[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export const ortSuite: BenchSuite = { name: "ort", run };
