/**
 * Training step time: loraport (train_step.onnx in onnxruntime-node on the Trainer's worker thread, CPU) vs
 * PyTorch eager (autograd + torch.optim.AdamW, transformers' default attention), same model, LoRA init, batch
 * and thread count, measured in the same run. Models: a GPT-2-like ~4M-parameter model (LoRA r 8 on c_attn,
 * B4×T128) and a Llama-like ~17M one (LoRA r 16 on all seven projections, B4×T128: the tiny Llama builder fixes 128 positions). The artifacts are exported
 * once into .loraport-cache/bench-train/ (a few minutes the first time). Also `--engine torch` (PEFT under torchrun,
 * same initial adapter and global batch) with 1 and 2 processes: tokens/s, 2-process scaling efficiency, peak RSS.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import { TorchTrainer, Trainer, type TrainExample } from "../src/training/index.js";
import { median } from "./measure.js";
import type { BenchOptions, BenchResult, BenchRatio, BenchRow, BenchSuite } from "./types.js";

const ROOT = resolve(import.meta.dirname, "../..");
const PYTHON = join(ROOT, ".venv/bin/python");
const CACHE = join(ROOT, ".loraport-cache/bench-train");
const ENV = { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error", HF_HUB_OFFLINE: "1" };

export interface Case {
  readonly name: string;
  readonly builtin: "gpt2" | "llama";
  readonly config: Record<string, number | boolean>;
  readonly targets: string;
  readonly r: number;
  readonly batch: number;
  readonly seq: number;
}

export const CASES: readonly Case[] = [
  { name: "gpt2-4M", builtin: "gpt2", config: { n_embd: 256, n_layer: 4, n_head: 4, vocab_size: 2048, n_positions: 256 }, targets: "c_attn", r: 8, batch: 4, seq: 128 },
  { name: "llama-17M", builtin: "llama", config: { hidden_size: 512, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 8, intermediate_size: 1024, vocab_size: 6144 },
    targets: "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", r: 16, batch: 4, seq: 128 },
];

function artifactFor(c: Case, log: (s: string) => void): string {
  const dir = join(CACHE, `${c.name}-r${c.r}`);
  if (existsSync(join(dir, "loraport-train.json"))) return dir;
  mkdirSync(CACHE, { recursive: true });
  log(`exporting ${c.name} (once; minutes) …`);
  execFileSync(PYTHON, ["-m", "loraport_sidecar.export.train_step", "--builtin", c.builtin, "--builtin-config", JSON.stringify(c.config),
    "--target-modules", c.targets, "--r", String(c.r), "--alpha", String(2 * c.r), "--out", dir], { cwd: ROOT, env: ENV, stdio: ["ignore", "ignore", "pipe"], timeout: 1_800_000 });
  return dir;
}

async function run(opts: BenchOptions): Promise<BenchResult> {
  const log = (s: string): void => void (opts.verbose && process.stderr.write(`  train: ${s}\n`));
  const threads = Math.min(cpus().length, 4);
  const steps = opts.quick ? 5 : 12;
  // Both sides warm up alike; ORT's arena and thread pool take 3–4 steps to settle (first steps 1.5× slower here).
  const warmup = 4;
  const rows: BenchRow[] = [];
  const ratios: BenchRatio[] = [];
  const sizes: string[] = [];
  for (const c of opts.quick ? CASES.slice(0, 1) : CASES) {
    const dir = artifactFor(c, log);
    // Same random batch shape on both sides (ids uniform over the vocabulary, every token scored).
    let s = 1;
    const vocab = (c.config["vocab_size"] as number);
    const rand = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const data: TrainExample[] = Array.from({ length: c.batch }, () => ({ input_ids: Array.from({ length: c.seq }, () => Math.floor(rand() * vocab)) }));
    const trainer = await Trainer.load(dir, { executionProviders: ["cpu"], intraOpNumThreads: threads });
    const res = await trainer.fit(data, { maxSteps: warmup + steps, batchSize: c.batch, lr: 1e-4, shuffle: false });
    await trainer.close();
    const ours = res.history.slice(warmup).map((h) => h.stepMs);

    const spec = join(CACHE, `${c.name}-spec.json`);
    writeFileSync(spec, JSON.stringify({ builtin: c.builtin, builtin_config: c.config, adapter: join(dir, "initial_adapter"), batch: c.batch, seq: c.seq, steps, warmup, threads, lr: 1e-4 }));
    const out = execFileSync(PYTHON, [join(ROOT, "sdk/bench/train_reference.py"), spec], { cwd: ROOT, env: ENV, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 1_800_000 });
    const ref = JSON.parse(out.trim().split("\n").at(-1)!) as { ms: number[]; params: number; lora_params: number; torch: string };
    const a = median(ours);
    const b = median(ref.ms);
    log(`${c.name}: loraport ${a.toFixed(1)} ms, torch ${b.toFixed(1)} ms`);
    sizes.push(`${c.name}: ${(ref.params / 1e6).toFixed(1)}M base + ${(ref.lora_params / 1e3).toFixed(0)}k LoRA, B${c.batch}×T${c.seq}`);
    rows.push({ name: `train step ${c.name} (B${c.batch}×T${c.seq}, median of ${steps})`, values: { loraport: a, pytorch: b }, unit: "ms" });
    ratios.push({ name: `train step ${c.name} loraport / PyTorch eager`, ratio: a / b, target: 0.7 });

    // --engine torch, 1 and 2 processes, the same global batch: tokens/s, scaling efficiency, peak RSS per rank.
    const ortTps = median(res.history.slice(warmup).map((h) => h.tokensPerSecond));
    const t = await torchEngineFigures(c, data, warmup, steps, log);
    rows.push(...t.rows);
    rows.push({ name: `train tokens/s ${c.name} (global B${c.batch}×T${c.seq}, median of ${steps})`, values: { "ort": ortTps, "torch ×1": t.tps[0]!, "torch ×2": t.tps[1]! }, unit: "tokens/s" });
    rows.push({ name: `peak RSS ${c.name}: this Node process (ORT engine, whole process)`, values: { node: process.resourceUsage().maxRSS / 1024 }, unit: "MiB" });
    ratios.push(t.scaling);
    ratios.push({ name: `--engine torch ×1 ÷ --engine ort tokens/s ${c.name}`, ratio: t.tps[0]! / ortTps, higherIsBetter: true });
  }
  return { suite: "train", rows, ratios, conditions: { threads, provider: "cpu", models: sizes.join("; ") } };
}

/** `--engine torch` with 1 and 2 processes on `data` (PEFT's init of the case's LoRA config: the exporter's initial adapter). */
export async function torchEngineFigures(c: Case, data: readonly TrainExample[], warmup: number, steps: number, log: (s: string) => void): Promise<{ rows: BenchRow[]; tps: number[]; scaling: BenchRatio }> {
  const rows: BenchRow[] = [];
  const tps: number[] = [];
  for (const n of [1, 2]) {
    const t = await TorchTrainer.load({ base: { builtin: c.builtin, config: c.config }, lora: { r: c.r, alpha: 2 * c.r, targetModules: c.targets.split(",") }, nprocPerNode: n });
    const r = await t.fit(data, { maxSteps: warmup + steps, batchSize: c.batch, lr: 1e-4, shuffle: false });
    const rss = t.peakRssMiB ?? [];
    await t.close();
    tps.push(median(r.history.slice(warmup).map((h) => h.tokensPerSecond)));
    log(`${c.name}: --engine torch ×${n}: ${tps.at(-1)!.toFixed(0)} tokens/s, peak RSS ${rss.join(" / ")} MiB`);
    rows.push({ name: `--engine torch ${c.name} ×${n} process${n > 1 ? "es" : ""}: peak RSS per rank`, values: Object.fromEntries(rss.map((m, i) => [`rank ${i}`, m])), unit: "MiB" });
  }
  const scaling: BenchRatio = { name: `--engine torch ${c.name} scaling efficiency, 2 processes (tokens/s ÷ 2 × 1 process)`, ratio: tps[1]! / (2 * tps[0]!), higherIsBetter: true,
    note: "each rank gets cores / 2 threads: on a 2-core machine 2 ranks split the same cores one rank used" };
  return { rows, tps, scaling };
}

export const trainSuite: BenchSuite = { name: "train", run };
