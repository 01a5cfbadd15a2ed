import type { Command } from "commander";
import { AdapterError } from "../../errors.js";
import { mergeModel } from "../../adapter/merge-model.js";
import { checkMergeTarget, mergeToGgufCommand, readMergeAdapter, withMergeTargetOptions, type MergeTargetOptions } from "./merge-to-gguf.js";
import { assertOutputNotInput } from "../../internal/output-guard.js";
import { progressReporter } from "../progress-bar.js";
import { writtenFiles } from "../written-files.js";

const DTYPES = { f32: "F32", f16: "F16", bf16: "BF16" } as const;

interface MergeCliOptions extends MergeTargetOptions {
  base: string;
  adapter: string;
  out: string;
  dtype?: string;
  safe?: boolean;
  unmerge?: boolean;
  force?: boolean;
  json?: boolean;
  progress?: boolean;
}

/**
 * `loraport merge`: a PEFT adapter merged into base safetensors weights (or, with --unmerge, subtracted from
 * merged ones), written with the base's names and sharding.
 */
export function registerMerge(program: Command): void {
  withMergeTargetOptions(program
    .command("merge")
    .description("merge a PEFT LoRA adapter (or a loralib checkpoint) into a base model's safetensors weights (file, folder or sharded folder), or unmerge it; --to gguf writes the merged model as a base GGUF for llama.cpp in one step (DoRA and modules_to_save included, which a GGUF LoRA cannot carry)")
    .requiredOption("--base <path>", "base model: a .safetensors file, a folder, or a *.safetensors.index.json")
    .requiredOption("--adapter <path>", "PEFT adapter folder (adapter_config.json + adapter_model.safetensors/.bin), or a loralib checkpoint file (with --r/--alpha or --preset)")
    .requiredOption("--out <path>", "output: a folder base gives a complete model folder (weights as the base's shards + config, tokenizer and other files); a .safetensors base, or --out ending in .safetensors with a one-file base, gives one weights file")
    .option("--dtype <dtype>", "output dtype of float tensors: f32, f16 or bf16 (default: as the base); --to gguf: of the matrices (norms and biases stay f32, as llama.cpp's converter writes them)")
    .option("--safe", "refuse non-finite merged values")
    .option("--unmerge", "subtract the adapter instead: --base holds weights it was merged into (W = W' − ΔW); DoRA needs the norms record its merge wrote (<out>/loraport/dora-norms.safetensors, or <out>.dora-norms beside a file)")
    .option("--force", "replace --out if it exists (default: an existing file or non-empty folder is refused)")
    .option("--json", "print one JSON object (files written with their sizes, modules merged) instead of text")
    .option("--progress", "progress as phase lines on stderr, also off a terminal or with --json (default: a bar on a terminal only)"))
    .action(async (opts: MergeCliOptions) => {
      let dtype: (typeof DTYPES)[keyof typeof DTYPES] | undefined;
      if (opts.dtype !== undefined) {
        dtype = DTYPES[opts.dtype.toLowerCase() as keyof typeof DTYPES];
        if (!dtype) throw new AdapterError(`--dtype '${opts.dtype}': expected f32, f16 or bf16`);
      }
      assertOutputNotInput(opts.out, [{ flag: "--base", path: opts.base }, { flag: "--adapter", path: opts.adapter }]);
      await checkMergeTarget(opts);
      const { adapter, warnings } = await readMergeAdapter(opts);
      for (const w of warnings) process.stderr.write(`loraport: warning: ${w}\n`);
      if (opts.to === "gguf") return mergeToGgufCommand(opts, adapter, dtype);
      const bar = progressReporter(opts);
      const t0 = performance.now();
      try {
        const report = await mergeModel(opts.base, adapter, opts.out, {
          ...(dtype ? { dtype } : {}), ...(opts.safe ? { safe: true } : {}), ...(opts.unmerge ? { unmerge: true } : {}), ...(opts.force ? { force: true } : {}), onProgress: bar.onProgress,
        });
        bar.stop();
        const secs = (performance.now() - t0) / 1000;
        if (opts.json) {
          console.log(JSON.stringify({
            command: opts.unmerge ? "unmerge" : "merge", out: report.out, files: writtenFiles(report.files), tensors: report.tensors, modules: report.merged.length,
            merged: report.merged, replaced: report.replaced, unused: report.unused, copied: report.copied, leftOut: report.leftOut, ...(report.doraNorms ? { doraNorms: report.doraNorms } : {}), bytesRead: report.bytesRead, bytesWritten: report.bytesWritten, seconds: secs,
          }));
          return;
        }
        const shards = report.files.filter((f) => f.endsWith(".safetensors")).length;
        const folder = report.files.length > 1 || report.copied.length > 0;
        const what = folder ? `${report.out} (model folder: ${shards > 1 ? `${shards} shards + index` : "1 weights file"}, ${report.copied.length} other files copied)` : report.files[0];
        console.log(`${opts.unmerge ? "unmerged" : "merged"} ${report.merged.length} modules ${opts.unmerge ? "from" : "into"} ${report.tensors} tensors in ${secs.toFixed(2)} s → ${what}`);
        if (report.leftOut.length) console.log(`other weight files of the base, not merged so not copied: ${report.leftOut.join(", ")}`);
        if (report.replaced.length) console.log(`replaced by the adapter's saved copies: ${report.replaced.join(", ")}`);
        if (report.unused.length) console.log(`adapter tensors with no base counterpart (not applied): ${report.unused.join(", ")}`);
        if (report.doraNorms) console.log(`DoRA norms the merge divided by, kept for --unmerge: ${report.doraNorms}`);
      } finally {
        bar.stop();
      }
    });
}
