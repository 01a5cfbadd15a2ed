import { Option, type Command } from "commander";
import { LORALIB_PRESETS } from "../../adapter/presets.js";
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
  readonly ortAdapterDefaults?: boolean;
  readonly alpha?: string;
  /** `--r`: the LoRA rank (train-step's fresh adapter, or a loralib checkpoint's). */
  readonly r?: string;
  /** `--lora-r`, the hidden old name of `--r`. */
  readonly loraR?: string;
  readonly enableLora?: string;
  readonly preset?: string;
  readonly json?: boolean;
  /** `--progress`: phase lines on stderr even off a terminal or with --json. */
  readonly progress?: boolean;
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
    .option("--head-inputs <names>", "adapter-inputs: modules given as whole-tensor inputs, or 'none' (default for sequence classification: every module named *classifier or *score, what PEFT saves with SEQ_CLS)")
    .option("--external-data <when>", "weights as external data: auto | yes | no", "auto")
    .option("--ort-adapter-defaults", "adapter-inputs: LoRA inputs get defaults so ONNX Runtime's .onnx_adapter files (loraport convert --to onnx-adapter) work in Python, C# and ORT GenAI; loraport's own runtime cannot run such an export")
    .option("--no-kv-cache", "causal LMs: a plain forward graph without the KV cache (no 'loraport generate')")
    .option("--r <n>", "LoRA rank r: of the fresh adapter with --mode train-step (default 8); of a loralib --adapter checkpoint with --mode merged (default: from the preset or the tensors)")
    .option("--alpha <n>", "LoRA alpha: of the fresh adapter with --mode train-step (default 16); of a loralib --adapter checkpoint with --mode merged (not stored in the file)")
    .option("--enable-lora <qkv>", "loralib checkpoints: MergedLinear blocks, e.g. q,v")
    .option("--preset <name>", `loralib checkpoints: hyper-parameter preset, one of ${LORALIB_PRESETS.map((p) => p.name).join(", ")} (default: detected from the keys)`)
    .option("--json", "print the result as JSON")
    .option("--progress", "progress as phase lines on stderr, also when stderr is not a terminal or with --json");
  // The old name of --r (loralib's); same value, not shown.
  cmd.addOption(new Option("--lora-r <n>").hideHelp());
  addTrainStepOptions(cmd).action(async (opts: ExportCliOptions) => {
      const handler = EXPORT_MODES[opts.mode];
      if (!handler) throw new LoraportError("E_USAGE", `--mode ${opts.mode}: expected one of ${Object.keys(EXPORT_MODES).join(", ")}`);
      assertOutputNotInput(opts.out, [{ flag: "--base", path: opts.base }, { flag: "--adapter", path: opts.adapter }]);
      await handler(opts);
    });
}
