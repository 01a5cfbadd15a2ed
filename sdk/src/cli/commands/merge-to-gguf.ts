/**
 * The parts of `loraport merge` beyond safetensors output: `--adapter` as a loralib checkpoint (a file, with the
 * loralib flags of `convert --to peft`) as well as a PEFT folder, and `--to gguf` (the merged model written as a
 * base GGUF for llama.cpp in one step: adapter/merge-gguf.ts).
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { Option, type Command } from "commander";
import { LoraportError } from "../../errors.js";
import type { LoraAdapter } from "../../adapter/adapter.js";
import type { GgufOutType } from "../../adapter/gguf-adapter.js";
import { GGUF_MODEL_TYPES } from "../../adapter/gguf-arch.js";
import { readHfHparams } from "../../adapter/gguf-hparams.js";
import { mergeToGguf } from "../../adapter/merge-gguf.js";
import { readPeftAdapter } from "../../adapter/peft-io.js";
import { progressReporter, type ProgressFlags } from "../progress-bar.js";
import { writtenFiles } from "../written-files.js";
import { loralibAdapter, type ConvertPeftOptions } from "./convert-peft.js";

export const MERGE_TARGETS = ["safetensors", "gguf"] as const;

export interface MergeTargetOptions extends ConvertPeftOptions, ProgressFlags {
  readonly adapter: string;
  readonly base: string;
  readonly out: string;
  readonly to?: string;
  readonly unmerge?: boolean;
  readonly safe?: boolean;
  readonly force?: boolean;
}

/** `--to` and the loralib flags, added to the `merge` command. */
export function withMergeTargetOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--to <target>", `what to write: safetensors (an HF model folder or weights file) or gguf (a base GGUF for llama.cpp, --out file.gguf; architectures ${GGUF_MODEL_TYPES.join(", ")}; see docs/gguf.md)`).default("safetensors"))
    .addOption(new Option("--preset <name>", "--adapter as a loralib checkpoint: its preset (see convert --to peft)"))
    .addOption(new Option("--r <n>", "--adapter as a loralib checkpoint: LoRA rank r"))
    .addOption(new Option("--alpha <n>", "--adapter as a loralib checkpoint: lora_alpha (loralib does not store it)"))
    .addOption(new Option("--enable-lora <blocks>", "--adapter as a loralib checkpoint: MergedLinear blocks of a fused projection (q,v or 1,0,1)"))
    .addOption(new Option("--fan-in-fan-out", "--adapter as a loralib checkpoint: base weights stored [in, out] (transformers Conv1D)"));
}

/** Checks that need only the flags and config.json, before the adapter is read: a bad target or architecture costs nothing. */
export async function checkMergeTarget(opts: MergeTargetOptions): Promise<void> {
  const to = opts.to ?? "safetensors";
  if (!(MERGE_TARGETS as readonly string[]).includes(to)) throw new LoraportError("E_USAGE", `--to ${to}: unknown target (expected one of ${MERGE_TARGETS.join(", ")})`);
  if (to !== "gguf") return;
  if (opts.unmerge) throw new LoraportError("E_USAGE", "--unmerge writes safetensors weights; it does not combine with --to gguf");
  if (existsSync(join(opts.base, "config.json"))) await readHfHparams(opts.base);
}

/** The adapter of `--adapter`: a PEFT folder, or a loralib checkpoint file converted with the loralib flags. */
export async function readMergeAdapter(opts: MergeTargetOptions): Promise<{ adapter: LoraAdapter; warnings: readonly string[] }> {
  if (existsSync(opts.adapter) && statSync(opts.adapter).isFile()) {
    const { adapter, report } = await loralibAdapter(opts.adapter, opts);
    // What the conversion assumed (preset, rank, alpha): on stderr, so --json output stays one object.
    for (const l of report.lines) process.stderr.write(`loraport: ${l}\n`);
    return { adapter, warnings: [] };
  }
  return readPeftAdapter(opts.adapter);
}

/** `merge --to gguf`: prints what merge prints (or one JSON object with --json). */
export async function mergeToGgufCommand(opts: MergeTargetOptions, adapter: LoraAdapter, dtype: GgufOutType | undefined): Promise<void> {
  const bar = progressReporter(opts);
  const t0 = performance.now();
  try {
    const report = await mergeToGguf(opts.base, adapter, opts.out, { ...(dtype ? { dtype } : {}), ...(opts.safe ? { safe: true } : {}), ...(opts.force ? { force: true } : {}), onProgress: bar.onProgress });
    bar.stop();
    const secs = (performance.now() - t0) / 1000;
    if (opts.json) {
      console.log(JSON.stringify({
        command: "merge", to: "gguf", out: report.out, files: writtenFiles([report.out]), architecture: report.architecture, outtype: report.outtype, tensors: report.tensors, modules: report.merged.length,
        merged: report.merged, replaced: report.replaced, unused: report.unused, bytesRead: report.bytesRead, bytesWritten: report.bytesWritten, notes: report.notes, seconds: secs,
      }));
      return;
    }
    for (const n of report.notes) console.log(n);
    console.log(`merged ${report.merged.length} modules into ${report.tensors} tensors in ${secs.toFixed(2)} s → ${report.out} (${report.architecture} base GGUF, ${report.outtype})`);
    if (report.replaced.length) console.log(`replaced by the adapter's saved copies: ${report.replaced.join(", ")}`);
    if (report.unused.length) console.log(`adapter tensors with no base counterpart (not applied): ${report.unused.join(", ")}`);
  } finally {
    bar.stop();
  }
}
