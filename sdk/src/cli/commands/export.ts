import type { Command } from "commander";
import { LoraportError } from "../../errors.js";
import { assertOutputNotInput } from "../../internal/output-guard.js";
import { exportInference } from "./export-inference.js";
import { addTrainStepOptions, exportTrainStepCli } from "./export-train-step.js";

/** What every `loraport export --mode X` branch receives (the parsed options, as commander gives them). */
export interface ExportCliOptions {
  readonly base: string;
  readonly out: string;
  readonly mode: string;
  readonly adapter?: string;
  readonly targets?: string;
  readonly externalData?: "auto" | "yes" | "no";
  readonly headInputs?: string;
  /** commander's `--no-kv-cache` sets this false. */
  readonly kvCache?: boolean;
  readonly alpha?: string;
  readonly loraR?: string;
  readonly enableLora?: string;
  readonly preset?: string;
  readonly json?: boolean;
  /** Options a mode adds for itself (e.g. training's), passed through untouched. */
  readonly [key: string]: unknown;
}

export type ExportModeHandler = (opts: ExportCliOptions) => Promise<void>;

/** One handler per --mode; each lives in its own file (training adds `train-step` here). */
export const EXPORT_MODES: Readonly<Record<string, ExportModeHandler>> = {
  "adapter-inputs": exportInference,
  merged: exportInference,
  "train-step": exportTrainStepCli,
};

/** `loraport export`: a base model to ONNX for `loraport run` / `LoraModel` (through the sidecar). */
export function registerExport(program: Command): void {
  const cmd = program
    .command("export")
    .description("export a Hugging Face base model to ONNX (LoRA factors as graph inputs, or an adapter merged in)")
    .requiredOption("--base <dir>", "Hugging Face model folder (config.json + weights)")
    .requiredOption("--out <dir>", "output folder (model.onnx + loraport-onnx.json); replaced if it exists")
    .option("--mode <mode>", `what to export: ${Object.keys(EXPORT_MODES).join(" | ")}`, "adapter-inputs")
    .option("--adapter <path>", "merged: PEFT adapter folder or loralib checkpoint to merge in")
    .option("--targets <names>", "adapter-inputs: comma-separated modules that get LoRA inputs (default: PEFT's for the architecture)")
    .option("--head-inputs <names>", "adapter-inputs: modules given as whole-tensor inputs, or 'none' (default: classifier for sequence classification)")
    .option("--external-data <when>", "weights as external data: auto | yes | no", "auto")
    .option("--no-kv-cache", "causal LMs: a plain forward graph without the KV cache (no 'loraport generate')")
    .option("--alpha <n>", "loralib checkpoints: lora_alpha (not stored in the file)")
    .option("--lora-r <n>", "loralib checkpoints: rank r")
    .option("--enable-lora <qkv>", "loralib checkpoints: MergedLinear blocks, e.g. q,v")
    .option("--preset <name>", "loralib checkpoints: hyper-parameter preset (e.g. gpt2-medium-e2e)")
    .option("--json", "print the result as JSON");
  addTrainStepOptions(cmd).action(async (opts: ExportCliOptions) => {
      const handler = EXPORT_MODES[opts.mode];
      if (!handler) throw new LoraportError("E_USAGE", `--mode ${opts.mode}: expected one of ${Object.keys(EXPORT_MODES).join(", ")}`);
      assertOutputNotInput(opts.out, [{ flag: "--base", path: opts.base }, { flag: "--adapter", path: opts.adapter }]);
      await handler(opts);
    });
}
