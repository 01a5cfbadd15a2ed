import { Option, type Command } from "commander";
import { parseEnableLora, type LoralibOptions } from "../adapter/loralib.js";
import { LoraportError } from "../errors.js";

/** The loralib flags as commander parses them (commands that take `--adapter` add them with `addLoralibOptions`). */
export interface LoralibCliOptions {
  readonly alpha?: string;
  readonly r?: string;
  /** `--lora-r`, the hidden old name of `--r`. */
  readonly loraR?: string;
  readonly enableLora?: string;
  readonly preset?: string;
}

/**
 * `--r`, `--alpha`, `--enable-lora`, `--preset`: what a loralib checkpoint does not store. The same names as
 * `convert --to peft` and `export`; `--lora-r` still works, unlisted.
 */
export function addLoralibOptions(cmd: Command): Command {
  return cmd
    .option("--r <n>", "LoRA rank r of an --adapter given as a loralib checkpoint (.pt) (default: from the preset or the tensors; PEFT folders store it)")
    .option("--alpha <n>", "lora_alpha of an --adapter given as a loralib checkpoint (.pt), which does not store it (PEFT folders do)")
    .option("--enable-lora <qkv>", "MergedLinear blocks of a loralib --adapter checkpoint's fused projections, e.g. q,v")
    .option("--preset <name>", "hyper-parameter preset of a loralib --adapter checkpoint (e.g. gpt2-medium-nlg)")
    .addOption(new Option("--lora-r <n>").hideHelp());
}

/** Hyper-parameters for a loralib checkpoint (the file stores none); fan_in_fan_out follows the exported base's modules. */
export function loralibOptions(opts: LoralibCliOptions, fanInFanOut: boolean): LoralibOptions {
  const num = (v: string, flag: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new LoraportError("E_USAGE", `${flag} ${v}: expected a positive number`);
    return n;
  };
  if (opts.r !== undefined && opts.loraR !== undefined && opts.r !== opts.loraR) {
    throw new LoraportError("E_USAGE", `--r ${opts.r} and --lora-r ${opts.loraR}: the same option under two names; give one`);
  }
  const r = opts.r ?? opts.loraR;
  return {
    fanInFanOut,
    ...(opts.alpha !== undefined ? { alpha: num(opts.alpha, "--alpha") } : {}),
    ...(r !== undefined ? { r: num(r, opts.r !== undefined ? "--r" : "--lora-r") } : {}),
    ...(opts.enableLora !== undefined ? { enableLora: parseEnableLora(opts.enableLora) } : {}),
    ...(opts.preset !== undefined ? { preset: opts.preset } : {}),
  };
}
