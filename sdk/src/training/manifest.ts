/**
 * The manifest of a train-step artifact (`loraport-train.json`, schema `schemas/train-manifest.schema.json`),
 * written by the sidecar's exporter (`loraport export --mode train-step`). Checked on load so a wrong or partial
 * folder fails naming the field, before any session is created.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileMissingError, FormatError } from "../errors.js";

export const TRAIN_MANIFEST_NAME = "loraport-train.json";
export const GRAPH_NAMES = ["train_step", "grad_step", "apply_step", "eval", "forward"] as const;
export type GraphName = (typeof GRAPH_NAMES)[number];
export type TrainTask = "causal-lm" | "seq-cls";

export interface TrainParamInfo {
  /** The key PEFT saves the tensor under (`base_model.model.….lora_A.weight`); graph names are `p.<key>` etc. */
  readonly key: string;
  readonly shape: readonly number[];
  readonly dtype: "F32";
}

export interface TrainGraphInfo {
  readonly file: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly ir_version: number;
  readonly opset: number;
  readonly nodes: number;
}

export interface AdamWInfo {
  readonly name: "adamw";
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weight_decay: number;
}

export interface TrainManifest {
  readonly format: "loraport-train-step";
  readonly version: 1;
  readonly task: TrainTask;
  readonly base: { readonly source: string; readonly model_type: string; readonly vocab_size: number; readonly num_labels: number | null; readonly max_positions: number | null };
  readonly adapter: { readonly folder: string; readonly r: number; readonly lora_alpha: number };
  readonly params: readonly TrainParamInfo[];
  readonly optimizer: AdamWInfo;
  readonly graphs: Readonly<Record<GraphName, TrainGraphInfo>>;
  readonly checks: { readonly gradient: readonly Readonly<Record<string, unknown>>[] };
  readonly tokenizer: string | null;
}

function fail(file: string, msg: string): never {
  throw new FormatError(file, msg);
}

function num(file: string, path: string, x: unknown): number {
  if (typeof x !== "number" || !Number.isFinite(x)) fail(file, `${path}: expected a number, got ${JSON.stringify(x)}`);
  return x;
}

function strArray(file: string, path: string, x: unknown): string[] {
  if (!Array.isArray(x) || !x.every((s) => typeof s === "string")) fail(file, `${path}: expected a list of strings`);
  return x as string[];
}

/** Read and check `<dir>/loraport-train.json`; graph files must exist beside it. */
export function readTrainManifest(dir: string): TrainManifest {
  const file = join(dir, TRAIN_MANIFEST_NAME);
  if (!existsSync(file)) {
    throw new FileMissingError(file, `${file}: no such file (expected a folder written by 'loraport export --mode train-step')`);
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    fail(file, `not valid JSON (${(err as Error).message})`);
  }
  if (raw === null || typeof raw !== "object") fail(file, "expected a JSON object");
  if (raw["format"] !== "loraport-train-step") fail(file, `format: expected "loraport-train-step", got ${JSON.stringify(raw["format"])}`);
  if (raw["version"] !== 1) fail(file, `version: expected 1, got ${JSON.stringify(raw["version"])} (written by a newer exporter?)`);
  if (raw["task"] !== "causal-lm" && raw["task"] !== "seq-cls") fail(file, `task: expected "causal-lm" or "seq-cls", got ${JSON.stringify(raw["task"])}`);
  const params = raw["params"];
  if (!Array.isArray(params) || params.length === 0) fail(file, "params: expected a non-empty list");
  params.forEach((p: Record<string, unknown>, i: number) => {
    if (typeof p?.["key"] !== "string") fail(file, `params[${i}].key: expected a string`);
    if (!Array.isArray(p["shape"]) || !p["shape"].every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) fail(file, `params[${i}].shape: expected a list of sizes`);
    if (p["dtype"] !== "F32") fail(file, `params[${i}].dtype: expected "F32", got ${JSON.stringify(p["dtype"])}`);
  });
  const opt = raw["optimizer"] as Record<string, unknown> | undefined;
  if (opt?.["name"] !== "adamw") fail(file, `optimizer.name: expected "adamw"`);
  for (const k of ["beta1", "beta2", "eps", "weight_decay"]) num(file, `optimizer.${k}`, opt[k]);
  const graphs = raw["graphs"] as Record<string, Record<string, unknown>> | undefined;
  if (!graphs || typeof graphs !== "object") fail(file, "graphs: expected an object");
  for (const g of GRAPH_NAMES) {
    const info = graphs[g];
    if (!info) fail(file, `graphs.${g}: missing`);
    if (typeof info["file"] !== "string") fail(file, `graphs.${g}.file: expected a string`);
    strArray(file, `graphs.${g}.inputs`, info["inputs"]);
    strArray(file, `graphs.${g}.outputs`, info["outputs"]);
    const path = join(dir, info["file"]);
    if (!existsSync(path)) throw new FileMissingError(path, `${path}: no such file (listed in ${file} as graphs.${g}.file)`);
  }
  const base = raw["base"] as Record<string, unknown> | undefined;
  if (!base || typeof base["vocab_size"] !== "number") fail(file, "base.vocab_size: expected a number");
  const adapter = raw["adapter"] as Record<string, unknown> | undefined;
  if (typeof adapter?.["folder"] !== "string") fail(file, "adapter.folder: expected a string");
  return raw as unknown as TrainManifest;
}
