/**
 * loraport's own backends in the suite, each producing the tensors one side of a pair is made of:
 * - `ts.merge`: loraport's TS merge of the case's adapter into the base weights (per adapted module);
 * - `ts.loralib-merge`: loraport's loralib math on the loralib checkpoint itself (no conversion);
 * - `ts.convert`: loraport's loralib → PEFT converter, whose output PEFT then merges (`peft.merge[ts-converted]`);
 * - `ort.adapter-inputs` / `ort.merged`: the exported model in ONNX Runtime (outputs per input batch);
 * - `ts.train`: loraport's Trainer on the case's train-step artifact (per-step losses, trained adapter).
 * A backend that refuses a feature (UnsupportedFeatureError) makes its pairs "not run" with the reason.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { LoraportError } from "../errors.js";
import type { TensorSource } from "../formats/safetensors/index.js";
import type { Tensor } from "../tensor/tensor.js";
import { fromFloat32, tensor, toFloat32 } from "../tensor/tensor-impl.js";
import { convertLoralibToPeft, loralibConvDelta, mergedLinearDelta, mergeWeight, readLoralibCheckpoint, readPeftAdapter, resolveModule, writePeftAdapter } from "../adapter/index.js";
import { LoraModel } from "../runtime/index.js";
import { Trainer } from "../training/index.js";
import type { CaseFile } from "./case.js";
import { pythonPath, type ReferenceManifest } from "./reference-side.js";

/** Tensors by param name (weights) or `batch<i>` (outputs); or why the backend did not run. */
export type BackendOutput = { tensors: Map<string, Tensor> } | { notRun: string };

export interface BackendContext {
  readonly caseFile: CaseFile;
  readonly manifest: ReferenceManifest;
  readonly reference: TensorSource;
  readonly workDir: string;
}

/** `ts.merge`: merge every adapted module of the adapter (PEFT folder) into the reference's base weights. */
export async function tsMerge(ctx: BackendContext, adapterDir: string | undefined): Promise<BackendOutput> {
  if (!adapterDir) return { notRun: "not applicable: no PEFT adapter for loraport to merge" };
  const { adapter } = await readPeftAdapter(adapterDir);
  const out = new Map<string, Tensor>();
  for (const [name, m] of adapter.modules) {
    const key = `base/${name}.weight`;
    if (!ctx.reference.entry(key)) throw new LoraportError("E_CONFORMANCE", `${ctx.caseFile.path}: the reference side wrote no base weight for module '${name}'`);
    const base = await ctx.reference.read(key);
    out.set(`${name}.weight`, mergeWeight(base, m, resolveModule(adapter.config, name).scaling, { module: name }));
  }
  // modules_to_save: the merged model carries the adapter's copy as is.
  for (const [name, t] of adapter.extraTensors) out.set(name, t);
  return { tensors: out };
}

/**
 * `ts.loralib-merge`: loraport's loralib math applied to the loralib checkpoint directly, no conversion:
 * MergedLinear blocks (`mergedLinearDelta`), ConvLoRA's reshape (`loralibConvDelta`), Linear, Conv1D layout
 * and Embedding (`mergeWeight`), with scaling alpha/r from the case file.
 */
export async function tsLoralibMerge(ctx: BackendContext, checkpoint: string | undefined): Promise<BackendOutput> {
  if (!checkpoint) return { notRun: "not applicable: the case has no loralib checkpoint" };
  const a = ctx.caseFile.adapter as unknown as { r: number; lora_alpha: number; enable_lora?: boolean[] | null; fan_in_fan_out?: boolean };
  const scaling = a.lora_alpha / a.r;
  const ckpt = await readLoralibCheckpoint(checkpoint);
  const out = new Map<string, Tensor>();
  for (const [name, { A, B }] of ckpt.modules) {
    const key = `base/${name}.weight`;
    if (!ctx.reference.entry(key)) throw new LoraportError("E_CONFORMANCE", `${ctx.caseFile.path}: the reference side wrote no base weight for module '${name}'`);
    const base = await ctx.reference.read(key);
    let merged: Tensor;
    if (base.shape.length === 4) {
      merged = addInF32(base, loralibConvDelta(A, B, base.shape, scaling, name));
    } else if (a.enable_lora) {
      const outFeatures = a.fan_in_fan_out ? base.shape[1]! : base.shape[0]!;
      merged = addInF32(base, mergedLinearDelta(A, B, a.enable_lora, outFeatures, scaling, a.fan_in_fan_out ?? false, name));
    } else {
      // Stored [A cols, B rows] without fan_in_fan_out can only be an embedding table [num_embeddings, dim].
      const embedding = !a.fan_in_fan_out && base.shape[0] === A.shape[1] && base.shape[1] === B.shape[0] && base.shape[0] !== base.shape[1];
      merged = mergeWeight(base, { kind: embedding ? "embedding" : a.fan_in_fan_out ? "conv1d" : "linear", A, B }, scaling, { module: name });
    }
    out.set(`${name}.weight`, merged);
  }
  for (const [name, t] of ckpt.other) out.set(name, t);
  return { tensors: out };
}

function addInF32(base: Tensor, delta: Tensor): Tensor {
  const w = toFloat32(base, true);
  const d = toFloat32(delta);
  if (w.length !== d.length) throw new LoraportError("E_SHAPE", `ΔW has ${d.length} values for a base of ${w.length}`);
  for (let i = 0; i < w.length; i++) w[i] = w[i]! + d[i]!;
  return fromFloat32(w, base.dtype, base.shape);
}

/**
 * `ts.convert`: loraport's loralib → PEFT conversion of the case's loralib checkpoint (hyper-parameters from the
 * case file), written as a PEFT folder that the reference side loads into real PEFT and `ts.merge` merges.
 */
export async function tsConvert(caseFile: CaseFile, checkpoint: string, outDir: string): Promise<{ dir: string; lines: readonly string[] } | { notRun: string }> {
  const a = caseFile.adapter as { r?: number; lora_alpha?: number; enable_lora?: boolean[] | null; fan_in_fan_out?: boolean };
  const ckpt = await readLoralibCheckpoint(checkpoint);
  const { adapter, report } = convertLoralibToPeft(ckpt, {
    ...(a.r !== undefined ? { r: a.r } : {}),
    ...(a.lora_alpha !== undefined ? { alpha: a.lora_alpha } : {}),
    enableLora: a.enable_lora ?? [], // [] = plain lora.Linear, as the case file says
    fanInFanOut: a.fan_in_fan_out ?? false,
  });
  await writePeftAdapter(outDir, adapter);
  return { dir: outDir, lines: report.lines };
}

function runExporter(args: readonly string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(pythonPath(), ["-m", "loraport_sidecar.export.onnx_export", ...args], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, PYTHONWARNINGS: "ignore", HF_HUB_OFFLINE: "1" } });
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (c: string) => (err = (err + c).slice(-4000)));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolvePromise() : reject(new LoraportError("E_EXPORT", `ONNX export failed (${code}): ${err.trim().split("\n").slice(-2).join(" | ")}`))));
  });
}

/** Outputs of the reference's inputs through ONNX Runtime (adapter-inputs or merged export). */
export async function ortForward(ctx: BackendContext, mode: "adapter-inputs" | "merged", adapterDir: string | undefined): Promise<BackendOutput> {
  if (!ctx.manifest.base_model_dir) return { notRun: "not applicable: this case's base is not a transformers model the exporter takes" };
  if (!adapterDir) return { notRun: "not applicable: no PEFT adapter for this case" };
  const { adapter } = await readPeftAdapter(adapterDir);
  const exportError = ctx.manifest.onnx_errors?.[mode];
  if (exportError) throw new LoraportError("E_EXPORT", `ONNX export (${mode}) failed: ${exportError}`);
  let out = ctx.manifest.onnx?.[mode];
  if (!out) {
    // Not exported by the reference process (e.g. verify): run the exporter on its own.
    out = join(ctx.workDir, `onnx-${mode}`);
    const args = ["--base", ctx.manifest.base_model_dir, "--out", out, "--mode", mode];
    if (mode === "merged") args.push("--adapter", adapterDir);
    else args.push("--targets", [...new Set([...adapter.modules.keys()].map((n) => n.split(".").pop()!))].join(","));
    await runExporter(args);
  }
  const model = await LoraModel.load(out);
  try {
    if (mode === "adapter-inputs") await model.registerAdapter("case", adapter);
    const tensors = new Map<string, Tensor>();
    for (let i = 0; i < ctx.manifest.forward.batches; i++) {
      const ids = await ctx.reference.read(`inputs/batch${i}/input_ids`);
      const mask = await ctx.reference.read(`inputs/batch${i}/attention_mask`);
      const { logits } = await model.run({ inputIds: rows(ids), attentionMask: rows(mask) }, mode === "adapter-inputs" ? { adapter: "case" } : {});
      tensors.set(`batch${i}`, ctx.manifest.forward.select?.startsWith("tokens") ? keepMasked(logits, toFloat32(mask)) : logits);
    }
    return { tensors };
  } finally {
    await model.close();
  }
}

function rows(t: Tensor): number[][] {
  const v = toFloat32(t);
  const [b, s] = [t.shape[0]!, t.shape[1]!];
  return Array.from({ length: b }, (_, i) => Array.from(v.subarray(i * s, (i + 1) * s)));
}

/** `[B, S, V]` → `[kept, V]`: the positions the attention mask keeps, in order (as the reference side does). */
export function keepMasked(logits: Tensor, mask: Float32Array): Tensor {
  const v = logits.shape[2]!;
  const x = toFloat32(logits);
  const kept: number[] = [];
  mask.forEach((m, i) => m !== 0 && kept.push(i));
  const out = new Float32Array(kept.length * v);
  kept.forEach((p, j) => out.set(x.subarray(p * v, (p + 1) * v), j * v));
  return tensor("F32", [kept.length, v], out);
}

/** Per-step losses (as one output, `loss per step`) and the adapter's factors by `<module>.lora_A|B`. */
export interface TrainOutputs {
  readonly losses: Tensor;
  readonly adapter: Map<string, Tensor>;
}

const trainings = new WeakMap<BackendContext, Map<string, Promise<TrainOutputs | { notRun: string }>>>();

/** `ts.train` or `peft.train` of this case, run (or read) once however many pairs use it. */
export function trainingOf(ctx: BackendContext, name: "ts.train" | "peft.train"): Promise<TrainOutputs | { notRun: string }> {
  let runs = trainings.get(ctx);
  if (!runs) trainings.set(ctx, (runs = new Map()));
  if (!runs.has(name)) runs.set(name, name === "ts.train" ? tsTrain(ctx) : peftTrain(ctx));
  return runs.get(name)!;
}

/** `ts.train`: the case's steps with loraport's Trainer (ONNX Runtime, worker thread), constant lr, no shuffling. */
async function tsTrain(ctx: BackendContext): Promise<TrainOutputs | { notRun: string }> {
  const t = ctx.manifest.train;
  if (!t) return { notRun: "not applicable: the case has no training section" };
  const trainer = await Trainer.load(t.artifact);
  try {
    const res = await trainer.fit(t.examples, { maxSteps: t.steps, batchSize: t.batch_size, lr: t.lr, lrSchedule: { kind: "constant" }, shuffle: false });
    const dir = join(ctx.workDir, "ts_trained");
    await trainer.saveAdapter(dir);
    return { losses: tensor("F32", [res.history.length], Float32Array.from(res.history, (h) => h.loss)), adapter: await adapterFactors(dir) };
  } finally {
    await trainer.close();
  }
}

/** `peft.train`: what the reference side's PEFT + torch.optim.AdamW run left (losses in the reference file). */
async function peftTrain(ctx: BackendContext): Promise<TrainOutputs | { notRun: string }> {
  const t = ctx.manifest.train;
  if (!t || !ctx.reference.entry("train/peft.train/losses")) return { notRun: "not produced: the reference side ran no training for this case" };
  return { losses: await ctx.reference.read("train/peft.train/losses"), adapter: await adapterFactors(t.reference_adapter) };
}

async function adapterFactors(dir: string): Promise<Map<string, Tensor>> {
  const { adapter } = await readPeftAdapter(dir);
  const out = new Map<string, Tensor>();
  for (const [name, m] of adapter.modules) {
    out.set(`${name}.lora_A`, m.A);
    out.set(`${name}.lora_B`, m.B);
  }
  return out;
}
