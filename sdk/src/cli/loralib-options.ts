import type { Command } from "commander";
import { parseEnableLora, type LoralibOptions } from "../adapter/loralib.js";
import { LoraportError } from "../errors.js";

/** The loralib flags as commander parses them (commands that take `--adapter` add them with `addLoralibOptions`). */
export interface LoralibCliOptions {
  readonly alpha?: string;
  readonly loraR?: string;
  readonly enableLora?: string;
  readonly preset?: string;
}

/** `--alpha`, `--lora-r`, `--enable-lora`, `--preset`: what a loralib checkpoint does not store. */
export function addLoralibOptions(cmd: Command): Command {
  return cmd
    .option("--alpha <n>", "loralib checkpoints: lora_alpha (not stored in the file)")
    .option("--lora-r <n>", "loralib checkpoints: rank r (default: from the preset or the tensors)")
    .option("--enable-lora <qkv>", "loralib checkpoints: MergedLinear blocks, e.g. q,v")
    .option("--preset <name>", "loralib checkpoints: hyper-parameter preset");
}

/** Hyper-parameters for a loralib checkpoint (the file stores none); fan_in_fan_out follows the exported base's modules. */
export function loralibOptions(opts: LoralibCliOptions, fanInFanOut: boolean): LoralibOptions {
  const num = (v: string, flag: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new LoraportError("E_USAGE", `${flag} ${v}: expected a positive number`);
    return n;
  };
  return {
    fanInFanOut,
    ...(opts.alpha !== undefined ? { alpha: num(opts.alpha, "--alpha") } : {}),
    ...(opts.loraR !== undefined ? { r: num(opts.loraR, "--lora-r") } : {}),
    ...(opts.enableLora !== undefined ? { enableLora: parseEnableLora(opts.enableLora) } : {}),
    ...(opts.preset !== undefined ? { preset: opts.preset } : {}),
  };
}
