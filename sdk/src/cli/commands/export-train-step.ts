/** `loraport export --mode train-step`: a LoRA training artifact for `loraport train` / `Trainer` (through the sidecar). */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { Sidecar } from "../../bridge/sidecar.js";
import { FileMissingError, LoraportError } from "../../errors.js";
import { explainExportError } from "../../training/export-errors.js";
import { progressReporter } from "../progress-bar.js";
import type { ExportCliOptions } from "./export.js";
import { rankOption, startSidecarShowing } from "./export-inference.js";

/** The options only this mode reads (registered on `export` so commander accepts them). */
export function addTrainStepOptions(cmd: Command): Command {
  return cmd
    .option("--target-modules <names>", "train-step: comma-separated LoRA target modules (default: PEFT's for the architecture)")
    .option("--task <task>", "train-step: causal-lm | seq-cls (default from the model's architecture)")
    .option("--weight-decay <x>", "train-step: AdamW weight decay (default 0.01)");
}

function positive(name: string, v: unknown, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || x <= 0 || (integer && !Number.isInteger(x))) throw new LoraportError("E_USAGE", `${name} ${String(v)}: expected a positive ${integer ? "integer" : "number"}`);
  return x;
}

export async function exportTrainStepCli(opts: ExportCliOptions): Promise<void> {
  if (!existsSync(join(opts.base, "config.json"))) {
    throw new FileMissingError(join(opts.base, "config.json"), `--base ${opts.base}: not a Hugging Face model folder (no config.json)`);
  }
  const task = opts["task"] as string | undefined;
  if (task !== undefined && task !== "causal-lm" && task !== "seq-cls") throw new LoraportError("E_USAGE", `--task ${task}: expected causal-lm or seq-cls`);
  const targets = (opts["targetModules"] as string | undefined) ?? opts.targets;
  const wd = opts["weightDecay"] === undefined ? undefined : Number(opts["weightDecay"]);
  if (wd !== undefined && !(wd >= 0)) throw new LoraportError("E_USAGE", `--weight-decay ${String(opts["weightDecay"])}: expected a number >= 0`);
  const r = positive("--r", rankOption(opts), true);
  const alpha = positive("--alpha", opts.alpha, false);
  const bar = progressReporter(opts);
  let sc: Sidecar | undefined;
  try {
    sc = await startSidecarShowing(bar);
    const res = await sc.exportTrainStep(opts.base, opts.out, {
      ...(task ? { task: task as "causal-lm" | "seq-cls" } : {}),
      ...(r !== undefined ? { r } : {}),
      ...(alpha !== undefined ? { alpha } : {}),
      ...(targets ? { targetModules: targets.split(",").map((s) => s.trim()).filter(Boolean) } : {}),
      ...(opts.adapter ? { adapter: opts.adapter } : {}),
      ...(wd !== undefined ? { optimizer: { weightDecay: wd } } : {}),
      onProgress: bar.onProgress,
    }).catch((err: unknown) => {
      throw explainExportError(err);
    });
    bar.stop();
    if (opts.json) console.log(JSON.stringify(res));
    else {
      console.log(`exported ${res.task} train-step artifact to ${res.out} (${res.params} trainable tensors, ${res.seconds.toFixed(1)} s)`);
      console.log(`checks: step-1 gradients vs PyTorch max rel ${res.gradMaxRelErr.toExponential(2)}, first AdamW update max abs ${res.updateMaxAbsErr.toExponential(2)}`);
    }
  } finally {
    bar.stop();
    await sc?.close();
  }
}
