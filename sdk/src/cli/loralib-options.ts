import { parseEnableLora, type LoralibOptions } from "../adapter/loralib.js";
import { LoraportError } from "../errors.js";

/** Hyper-parameters for a loralib checkpoint (the file stores none); fan_in_fan_out follows the exported base's modules. */
export function loralibOptions(opts: { alpha?: string; loraR?: string; enableLora?: string; preset?: string }, fanInFanOut: boolean): LoralibOptions {
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
