/**
 * `verify`: the conformance comparisons on a user's own base model folder and PEFT adapter — loraport's merge
 * vs PEFT's merge, ONNX Runtime vs PyTorch (PEFT) forward — with the same report.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { FileMissingError } from "../errors.js";
import { resolveModelPath } from "../hub/resolve-model.js";
import { openSafetensors } from "../formats/safetensors/index.js";
import type { CaseFile, PairKind, Tolerance } from "./case.js";
import { conformanceReferenceDir } from "./paths.js";
import { runReferenceVerify } from "./reference-side.js";
import type { ConformanceReport } from "./report.js";
import { buildReport, compareCase } from "./runner.js";

/** Tolerances per storage dtype (the same values the case files state). */
export const TOLERANCES: Readonly<Record<string, Readonly<Record<PairKind, Tolerance>>>> = {
  F32: { weights: { abs: 1e-5, rel: 1e-5 }, logits: { abs: 1e-4, rel: 1e-4 } },
  F16: { weights: { abs: 1e-3, rel: 2e-3 }, logits: { abs: 1e-2, rel: 1e-2 } },
  BF16: { weights: { abs: 8e-3, rel: 1.6e-2 }, logits: { abs: 5e-2, rel: 5e-2 } },
};

export interface VerifyOptions {
  /** Hugging Face model folder (config.json + safetensors). */
  readonly base: string;
  /** PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
  readonly adapter: string;
  /** JSON `{"input_ids": [[...]], "attention_mask": [[...]]}` (or `{"batches": [...]}`); default: a fixed padded batch. */
  readonly inputs?: string;
  /** Keep the work files here. */
  readonly workDir?: string;
}

export async function runVerify(options: VerifyOptions): Promise<ConformanceReport> {
  const base = resolve(await resolveModelPath(options.base));
  const adapter = resolve(options.adapter);
  if (!existsSync(join(base, "config.json"))) throw new FileMissingError(join(base, "config.json"), `${base}: not a Hugging Face model folder (no config.json)`);
  if (!existsSync(join(adapter, "adapter_config.json"))) throw new FileMissingError(join(adapter, "adapter_config.json"), `${adapter}: not a PEFT adapter folder (no adapter_config.json)`);
  if (options.inputs && !existsSync(options.inputs)) throw new FileMissingError(options.inputs);
  const out = options.workDir ? resolve(options.workDir) : mkdtempSync(join(tmpdir(), "loraport-verify-"));
  mkdirSync(out, { recursive: true });
  try {
    // The reference process also makes the ONNX exports (it has the base loaded already).
    const manifest = await runReferenceVerify(base, adapter, out, options.inputs, ["adapter-inputs", "merged"]);
    const dtype = await baseDtype(join(out, manifest.tensors));
    const caseFile: CaseFile = {
      id: "verify", title: `${adapter} on ${base}`, dtype, tolerances: TOLERANCES[dtype] ?? TOLERANCES["F32"]!,
      pairs: [
        { a: "ts.merge", b: "peft.merge", kind: "weights" },
        { a: "peft.merged", b: "peft.unmerged", kind: "logits" },
        { a: "ort.adapter-inputs", b: "peft.unmerged", kind: "logits" },
        { a: "ort.merged", b: "peft.merged", kind: "logits" },
      ],
      adapter: { source: "peft" }, base: { family: "user" }, path: adapter,
    };
    const notes: string[] = [];
    const results = await compareCase(caseFile, { manifest }, out, undefined, notes);
    return buildReport("verify", results, { verify: notes }, { reference_dir: conformanceReferenceDir(), base, ci: Boolean(process.env["CI"]) });
  } finally {
    if (!options.workDir) rmSync(out, { recursive: true, force: true });
  }
}

/** The storage dtype of the base's adapted weights (tolerances follow it). */
async function baseDtype(file: string): Promise<string> {
  const src = await openSafetensors(file);
  try {
    const first = src.names.find((n) => n.startsWith("base/"));
    return (first && src.entry(first)?.dtype) || "F32";
  } finally {
    await src.close();
  }
}
