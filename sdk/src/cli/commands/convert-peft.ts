/**
 * The `--to peft` branch of `loraport convert`: a loralib checkpoint → a PEFT adapter folder.
 * `convert.ts` adds `withPeftOptions` to its command and `peft: toPeft` to its targets.
 */
import { Option, type Command } from "commander";
import { AdapterError } from "../../errors.js";
import { convertLoralibToPeft, type ConversionReport } from "../../adapter/convert.js";
import { parseEnableLora, readLoralibCheckpoint, type LoralibCheckpoint } from "../../adapter/loralib.js";
import { describeAdapter, type LoraAdapter } from "../../adapter/adapter.js";
import { readBaseWeightShapes } from "../../adapter/base-shapes.js";
import { writePeftAdapter } from "../../adapter/peft-io.js";
import { peftAdapterFiles } from "../written-files.js";

export interface ConvertPeftOptions {
  readonly out?: string;
  readonly preset?: string;
  readonly r?: string;
  readonly alpha?: string;
  readonly enableLora?: string;
  readonly baseModel?: string;
  readonly fanInFanOut?: boolean;
  readonly json?: boolean;
  /** --to peft: the base model, whose weight shapes settle loralib ConvLoRA kernels and groups. */
  readonly base?: string;
}

function num(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === "" || !Number.isFinite(x)) throw new AdapterError(`${flag}: expected a number, got '${v}'`);
  return x;
}

/** The flags of the peft branch, added to the `convert` command. */
export function withPeftOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--preset <name>", "loralib preset (gpt2-medium-nlg, gpt2-large-nlg, roberta-base-glue, roberta-large-glue, deberta-v2-xxlarge-glue); detected from keys when unambiguous"))
    .addOption(new Option("--r <n>", "--to peft: LoRA rank r of the loralib checkpoint, per block (overrides the preset)"))
    .addOption(new Option("--alpha <n>", "--to peft: lora_alpha of the loralib checkpoint, which does not store it (overrides the preset)"))
    .addOption(new Option("--enable-lora <blocks>", "MergedLinear blocks of a fused projection: q,v or 1,0,1"))
    .addOption(new Option("--fan-in-fan-out", "base weights stored [in, out] (transformers Conv1D)"))
    .addOption(new Option("--base-model <id>", "base_model_name_or_path recorded in adapter_config.json"));
}

/** `convert --to peft`: the target function `convert.ts` dispatches to. */
export async function toPeft(input: string, opts: ConvertPeftOptions): Promise<void> {
  if (!opts.json) {
    await convertToPeft(input, opts);
    return;
  }
  const lines: string[] = [];
  const r = await convertToPeft(input, opts, (l) => lines.push(l));
  console.log(JSON.stringify({ command: "convert", to: "peft", input, out: opts.out, files: peftAdapterFiles(opts.out!), ...r, report: lines }));
}

/** What `convert --to peft` wrote, for `--json`. */
export interface ConvertPeftSummary {
  readonly modules: number;
  readonly otherTensors: number;
  readonly loraParams: number;
  readonly savedWholeParams: number;
}

/** A loralib checkpoint converted to a PEFT adapter in memory, with the loralib flags applied (also `--to gguf`). */
export async function loralibAdapter(input: string, opts: ConvertPeftOptions, baseWeightShape?: (module: string) => readonly number[] | undefined): Promise<{ ckpt: LoralibCheckpoint; adapter: LoraAdapter; report: ConversionReport }> {
  const ckpt = await readLoralibCheckpoint(input);
  const r = num("--r", opts.r);
  const alpha = num("--alpha", opts.alpha);
  const { adapter, report } = convertLoralibToPeft(ckpt, {
    ...(opts.preset !== undefined ? { preset: opts.preset } : {}),
    ...(r !== undefined ? { r } : {}),
    ...(alpha !== undefined ? { alpha } : {}),
    ...(opts.enableLora !== undefined ? { enableLora: parseEnableLora(opts.enableLora) } : {}),
    ...(opts.baseModel !== undefined ? { baseModel: opts.baseModel } : {}),
    ...(opts.fanInFanOut !== undefined ? { fanInFanOut: opts.fanInFanOut } : {}),
    ...(baseWeightShape ? { baseWeightShape } : {}),
  });
  return { ckpt, adapter, report };
}

export async function convertToPeft(input: string, opts: ConvertPeftOptions, log: (line: string) => void = (l) => console.log(l)): Promise<ConvertPeftSummary> {
  if (!opts.out) throw new AdapterError("convert --to peft needs --out <dir>");
  const shapes = opts.base !== undefined ? await readBaseWeightShapes(opts.base) : undefined;
  const { ckpt, adapter, report } = await loralibAdapter(input, opts, shapes);
  await writePeftAdapter(opts.out, adapter);
  log(`read ${input}: ${ckpt.modules.size} LoRA modules${ckpt.strippedModulePrefix ? " ('module.' prefix stripped)" : ""}, ${ckpt.other.size} other tensors`);
  for (const line of report.lines) log(line);
  const d = describeAdapter(adapter);
  log(`wrote ${opts.out}: ${d.loraParams.toLocaleString("en-US")} LoRA parameters + ${d.extraParams.toLocaleString("en-US")} saved whole`);
  return { modules: ckpt.modules.size, otherTensors: ckpt.other.size, loraParams: d.loraParams, savedWholeParams: d.extraParams };
}
