/**
 * Trainer vs PyTorch: the same steps from the same initial adapter and batches, in loraport (onnxruntime-node,
 * worker thread) and in PyTorch (PEFT model + torch.optim.AdamW + transformers' schedule). Reference figures are
 * produced by torch_reference.py in the same run.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CancelledError, FileMissingError, LoraportError } from "../../src/errors.js";
import { learningRate, readTrainCheckpoint as readCheckpoint, TorchTrainer, Trainer, type TrainExample } from "../../src/training/index.js";
import { readSafetensors } from "../../src/formats/safetensors/index.js";
import { run as runCli } from "../../src/cli/main.js";
import { readTrainManifest } from "../../src/training/manifest.js";
import { tokenizeTexts } from "../../src/training/tokenize.js";
import { REPO_ROOT, runPython, runPythonJson, tempDir } from "../helpers/python.js";
import { errors, exportArtifact, seededExamples, TORCH_REFERENCE } from "./helpers.js";
import { limit } from "../helpers/timeouts.js";

const tmp = tempDir("loraport-train-");
// The same artifact as examples/finetune-tiny-gpt2.ts exports (its cache layout: <cache>/artifact), so the example
// test below reuses it. LORAPORT_TEST_TRAIN_ARTIFACT reuses an artifact exported earlier with the same arguments (local iteration only).
const art = process.env["LORAPORT_TEST_TRAIN_ARTIFACT"] ?? join(tmp.dir, "artifact");
const VOCAB = 128;
const BUILTIN = { builtin: "gpt2", builtin_config: {} };

interface Reference { losses: number[]; first_grads: Record<string, number[]>; names: string[]; logits?: number[]; logits_shape?: number[] }

function chunks<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

function torchReference(spec: Record<string, unknown>): Reference {
  const file = join(tmp.dir, `spec-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify({ ...BUILTIN, adapter: join(art, "initial_adapter"), task: "causal-lm", betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01, ...spec }));
  const out = runPython(`import runpy, sys; sys.argv = ["torch_reference.py", ${JSON.stringify(file)}]; runpy.run_path(${JSON.stringify(TORCH_REFERENCE)}, run_name="__main__")`).trim().split("\n");
  return JSON.parse(out.at(-1)!) as Reference;
}

beforeAll(() => {
  if (!process.env["LORAPORT_TEST_TRAIN_ARTIFACT"]) exportArtifact(art, ["--builtin", "gpt2", "--target-modules", "c_attn,c_fc", "--r", "8", "--alpha", "16"]);
}, limit(400_000));

afterAll(() => tmp.cleanup());

describe("Trainer (tiny GPT-2, LoRA on c_attn and c_fc)", () => {
  it("20 steps match PyTorch: loss 1e-5 at step 1 and 1e-3 at step 20, step-1 gradients 1e-5, trained adapter gives the same logits in PEFT", async () => {
    const data = seededExamples(40, VOCAB, 1);
    const lr = 5e-3;
    const schedule = { kind: "linear" as const, warmupSteps: 3 };

    // Step-1 gradients, recovered from the first moment: m1 = (1 - β1)·g.
    const t1 = await Trainer.load(art, { executionProviders: ["cpu"] });
    await t1.fit(data, { maxSteps: 1, batchSize: 2, lr, lrSchedule: schedule, shuffle: false });
    const ck = join(tmp.dir, "after-step-1.safetensors");
    await t1.saveCheckpoint(ck);
    await t1.close();
    const st = await readCheckpoint(ck, t1.manifest.params);

    const t = await Trainer.load(art, { executionProviders: ["cpu"] });
    const losses: number[] = [];
    await t.fit(data, { maxSteps: 20, batchSize: 2, lr, lrSchedule: schedule, shuffle: false, onProgress: (e) => losses.push(e.loss) });
    const adapterDir = join(tmp.dir, "trained-adapter");
    await t.saveAdapter(adapterDir);
    const probe = data.slice(0, 3);
    const logits = await t.forward(probe);
    await t.close();

    const ref = torchReference({ micro_batches: chunks(data, 2), accumulation: 1, lr, schedule: { kind: "linear", warmup: 3 }, trained_adapter: adapterDir, logits_batch: probe });
    expect(losses).toHaveLength(20);
    const rel = (i: number): number => Math.abs(losses[i]! - ref.losses[i]!) / Math.abs(ref.losses[i]!);
    console.log(`loss rel err step 1 ${rel(0).toExponential(2)}, step 20 ${rel(19).toExponential(2)}; loss ${ref.losses[0]!.toFixed(4)} → ${ref.losses[19]!.toFixed(4)}`);
    expect(rel(0)).toBeLessThanOrEqual(1e-5);
    expect(rel(19)).toBeLessThanOrEqual(1e-3);

    let worst = { maxAbs: 0, maxRel: 0, name: "" };
    t.manifest.params.forEach((info, i) => {
      const name = ref.names[i]!;
      expect(name.replace(".default.", ".")).toBe(info.key);
      const g = Float32Array.from(st.m[i]!, (x) => x / (1 - 0.9));
      const e = errors(g, ref.first_grads[name]!);
      if (e.maxRel >= worst.maxRel) worst = { ...e, name };
    });
    console.log(`step-1 gradients: max abs ${worst.maxAbs.toExponential(2)}, max rel ${worst.maxRel.toExponential(2)} (${worst.name})`);
    expect(worst.maxRel).toBeLessThanOrEqual(1e-5);

    expect(logits.shape).toEqual(ref.logits_shape);
    const le = errors(logits.data as Float32Array, ref.logits!);
    console.log(`trained adapter logits, PEFT vs loraport forward: max abs ${le.maxAbs.toExponential(2)}`);
    expect(le.maxAbs).toBeLessThanOrEqual(1e-4);
  });

  it("gradient accumulation matches PyTorch's loss/N per micro-batch then one AdamW step", async () => {
    const data = seededExamples(16, VOCAB, 2);
    const t = await Trainer.load(art, { executionProviders: ["cpu"] });
    const losses: number[] = [];
    await t.fit(data, { maxSteps: 4, batchSize: 2, gradientAccumulation: 2, lr: 1e-2, shuffle: false, onProgress: (e) => losses.push(e.loss) });
    await t.close();
    const ref = torchReference({ micro_batches: chunks(data, 2), accumulation: 2, lr: 1e-2, schedule: { kind: "constant" } });
    const rels = losses.map((l, i) => Math.abs(l - ref.losses[i]!) / Math.abs(ref.losses[i]!));
    console.log(`accumulation loss rel errs: ${rels.map((r) => r.toExponential(1)).join(", ")}`);
    expect(rels[0]!).toBeLessThanOrEqual(1e-5);
    expect(Math.max(...rels)).toBeLessThanOrEqual(1e-3);
  });

  it("an aborted fit leaves a whole checkpoint, and resuming from it ends where an unbroken run ends", async () => {
    const data = seededExamples(24, VOCAB, 3);
    const opts = { maxSteps: 6, batchSize: 4, lr: 1e-2, lrSchedule: { kind: "cosine" as const, warmupSteps: 1 }, seed: 5 };
    const whole = await Trainer.load(art, { executionProviders: ["cpu"] });
    await whole.fit(data, opts);
    const want = whole.params();
    await whole.close();

    const ck = join(tmp.dir, "resume.safetensors");
    const ctl = new AbortController();
    const a = await Trainer.load(art, { executionProviders: ["cpu"] });
    const run = a.fit(data, { ...opts, checkpointEvery: 1, checkpointPath: ck, signal: ctl.signal, onProgress: (e) => { if (e.done === 2) ctl.abort(); } });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    const stoppedAt = a.step;
    await a.close();
    expect(stoppedAt).toBeGreaterThanOrEqual(2);
    expect(stoppedAt).toBeLessThan(6);
    const saved = await readCheckpoint(ck, a.manifest.params);
    expect(saved.step).toBe(stoppedAt);

    const b = await Trainer.load(art, { executionProviders: ["cpu"], checkpoint: ck });
    expect(b.step).toBe(stoppedAt);
    await b.fit(data, opts);
    expect(b.step).toBe(6);
    const got = b.params();
    await b.close();
    for (const [key, w] of want) expect(Array.from(got.get(key)!.data as Float32Array)).toEqual(Array.from(w.data as Float32Array));
  });

  it("--engine torch with 1 process trains what --engine ort trains (the conformance case's tolerances: losses 1e-4, factors 1e-5)", async () => {
    // Same initial adapter (the artifact's), data, order (shuffled, seed 3), schedule and accumulation; torch runs
    // the PEFT model in eager PyTorch, ORT the exported graphs.
    const data = seededExamples(18, VOCAB, 6);
    // lr 2e-3: Adam turns fp32 rounding differences into factor differences proportional to lr (8e-6 at 5e-3 here).
    const opts = { maxSteps: 4, batchSize: 2, gradientAccumulation: 2, lr: 2e-3, lrSchedule: { kind: "linear" as const, warmupSteps: 1 }, seed: 3 };
    const ort = await Trainer.load(art, { executionProviders: ["cpu"] });
    const ortLosses: number[] = [];
    await ort.fit(data, { ...opts, onProgress: (e) => ortLosses.push(e.loss) });
    const ortParams = ort.params();
    await ort.close();
    const torch = await TorchTrainer.load({ base: { builtin: "gpt2" }, adapter: join(art, "initial_adapter") });
    const torchLosses: number[] = [];
    await torch.fit(data, { ...opts, onProgress: (e) => torchLosses.push(e.loss) });
    const out = join(tmp.dir, "torch-engine-adapter");
    await torch.saveAdapter(out);
    await torch.close();
    const { tensors } = await readSafetensors(join(out, "adapter_model.safetensors"));
    expect(torchLosses).toHaveLength(4);
    const lossErr = Math.max(...torchLosses.map((l, i) => Math.abs(l - ortLosses[i]!)));
    let factorErr = 0;
    for (const [key, want] of ortParams) factorErr = Math.max(factorErr, errors(tensors.get(key)!.data as Float32Array, want.data as Float32Array).maxAbs);
    console.log(`torch engine vs ORT engine, 4 steps: loss max abs ${lossErr.toExponential(2)}, factors max abs ${factorErr.toExponential(2)}`);
    expect([...tensors.keys()].sort()).toEqual([...ortParams.keys()].sort());
    expect(lossErr).toBeLessThanOrEqual(1e-4);
    expect(factorErr).toBeLessThanOrEqual(1e-5);
  });

  it("learning-rate schedules equal transformers' get_*_schedule_with_warmup", () => {
    const ref = runPythonJson<Record<string, number[]>>(`
import json, torch
from transformers import get_constant_schedule_with_warmup as c, get_linear_schedule_with_warmup as l, get_cosine_schedule_with_warmup as k
out = {}
for name, make in (("constant", lambda o: c(o, 3)), ("linear", lambda o: l(o, 3, 17)), ("cosine", lambda o: k(o, 3, 17))):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    s = make(opt); lrs = []
    for _ in range(17):
        lrs.append(opt.param_groups[0]["lr"]); opt.step(); s.step()
    out[name] = lrs
print(json.dumps(out))`);
    for (const kind of ["constant", "linear", "cosine"] as const) {
      const got = Array.from({ length: 17 }, (_, s) => learningRate({ kind, warmupSteps: 3 }, 0.1, s, 17));
      expect(errors(got, ref[kind]!).maxAbs).toBeLessThan(1e-12);
    }
  });

  it("refuses bad data and bad folders with typed errors naming the place", async () => {
    const t = await Trainer.load(art, { executionProviders: ["cpu"] });
    const bad: TrainExample[] = [{ input_ids: [1, 2, 3] }, { input_ids: [1, 500, 3] }];
    await expect(t.fit(bad)).rejects.toThrow(/data\[1\]: input_ids\[1\]: expected an integer in \[0, 128\)/);
    await expect(t.fit([{ input_ids: [1, 2], labels: [1] }])).rejects.toBeInstanceOf(LoraportError);
    await expect(t.fit([{ input_ids: [1, 2, 3] }], { batchSize: 0 })).rejects.toThrow(/batchSize: expected a positive integer/);
    await t.close();
    await expect(Trainer.load(join(tmp.dir, "nowhere"))).rejects.toBeInstanceOf(FileMissingError);
    expect(existsSync(join(art, "loraport-train.json"))).toBe(true);
  });

  it("examples/finetune-tiny-gpt2.ts: the loss falls and the loss-curve SVG is written", () => {
    const cache = join(art, "..");
    const out = join(tmp.dir, "example-run");
    execFileSync(join(REPO_ROOT, "node_modules/.bin/tsx"), ["examples/finetune-tiny-gpt2.ts", "--steps", "60", "--cache", cache, "--out", out], { cwd: REPO_ROOT, encoding: "utf8", timeout: 300_000, stdio: ["ignore", "pipe", "pipe"] });
    const r = JSON.parse(readFileSync(join(out, "losses.json"), "utf8")) as { train: number[]; heldOutBefore: number; heldOutAfter: number };
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log(`example: train loss ${mean(r.train.slice(0, 5)).toFixed(3)} → ${mean(r.train.slice(-5)).toFixed(3)}, held-out ${r.heldOutBefore.toFixed(3)} → ${r.heldOutAfter.toFixed(3)}`);
    expect(r.train).toHaveLength(60);
    expect(mean(r.train.slice(-5))).toBeLessThan(mean(r.train.slice(0, 5)) - 0.1);
    expect(r.heldOutAfter).toBeLessThan(r.heldOutBefore - 0.1);
    const svg = readFileSync(join(out, "loss-curve.svg"), "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.match(/<polyline[^>]*points="([^"]*)"/)?.[1]?.trim().split(" ")).toHaveLength(60);
    expect(existsSync(join(out, "adapter", "adapter_model.safetensors"))).toBe(true);
  });

  it("loraport train: JSONL ids in, a PEFT folder out; text without a tokenizer is a one-line error", async () => {
    const data = join(tmp.dir, "data.jsonl");
    writeFileSync(data, seededExamples(12, VOCAB, 4).map((e) => JSON.stringify(e)).join("\n") + "\n");
    const out = join(tmp.dir, "cli-adapter");
    const code = await runCli(["train", "--artifact", art, "--data", data, "--out", out, "--steps", "4", "--lr", "1e-2", "--batch-size", "3", "--provider", "cpu", "--json"]);
    expect(code).toBe(0);
    expect(existsSync(join(out, "adapter_model.safetensors"))).toBe(true);
    expect(readFileSync(join(out, "adapter_config.json"), "utf8")).toBe(readFileSync(join(art, "initial_adapter", "adapter_config.json"), "utf8"));

    const textData = join(tmp.dir, "text.jsonl");
    writeFileSync(textData, '{"input_ids": [1, 2, 3]}\n{"text": "hello there"}\n');
    const errs: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
    try {
      expect(await runCli(["train", "--artifact", art, "--data", textData, "--out", join(tmp.dir, "x")])).toBe(1);
      expect(await runCli(["train", "--artifact", art, "--data", join(tmp.dir, "missing.jsonl"), "--out", join(tmp.dir, "x")])).toBe(1);
    } finally {
      process.stderr.write = write;
    }
    expect(errs.join("")).toMatch(/text\.jsonl: line 2: has "text" but the artifact .* has no tokenizer/);
    expect(errs.join("")).toMatch(/missing\.jsonl: no such file/);
  });

  it("text examples are tokenized with the artifact's tokenizer.json", async () => {
    // A word-level tokenizer built by the real `tokenizers` package, placed where the exporter copies one.
    const fake = join(tmp.dir, "tok-artifact");
    runPython(`
import os, sys
from tokenizers import Tokenizer, models, pre_tokenizers
tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 5, "there": 7}, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
os.makedirs(os.path.join(sys.argv[1], "tokenizer"), exist_ok=True)
tok.save(os.path.join(sys.argv[1], "tokenizer", "tokenizer.json"))`, [fake]);
    const manifest = { ...readTrainManifest(art), tokenizer: "tokenizer" };
    const ids = await tokenizeTexts(fake, manifest, [{ text: "hello there you", line: 1 }, { text: "there", line: 2 }], "data.jsonl");
    expect(ids).toEqual([[5, 7, 0], [7]]);
  });
});
