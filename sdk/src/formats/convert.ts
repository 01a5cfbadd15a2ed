/**
 * torch.save checkpoint → safetensors. safetensors cannot express shared storage, so a tensor reachable
 * under several names (tied weights) is stored once, under the first name; the others are reported.
 */
import { resolve } from "node:path";
import { FormatError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { detectFormat } from "./detect.js";
import { writeSafetensors } from "./safetensors/writer.js";
import { LEGACY_TORCH_ADVICE, readTorchCheckpoint } from "./torch/checkpoint.js";

export interface TorchToSafetensorsResult {
  /** Names written, in state-dict order. */
  readonly written: readonly string[];
  /** Dropped name → the written name holding the same tensor. */
  readonly aliases: ReadonlyMap<string, string>;
  readonly bytes: number;
}

export async function convertTorchToSafetensors(input: string, output: string): Promise<TorchToSafetensorsResult> {
  if (resolve(input) === resolve(output)) throw new FormatError(output, "output is the input file; choose another --out");
  const format = await detectFormat(input);
  if (format === "torch-legacy") throw new FormatError(input, LEGACY_TORCH_ADVICE);
  if (format === "safetensors") throw new FormatError(input, "already a safetensors file");
  if (format !== "torch") throw new FormatError(input, "not a torch.save zip checkpoint");
  const { tensors, views } = await readTorchCheckpoint(input);
  // Same storage, dtype and view = the same tensor under two names (state_dict() detaches tied weights into
  // separate tensor objects, so object identity is not enough).
  const firstName = new Map<string, string>();
  const aliases = new Map<string, string>();
  const out: Array<[string, Tensor]> = [];
  let bytes = 0;
  for (const [name, t] of tensors) {
    const v = views.get(name)!;
    const identity = JSON.stringify([v.storage, t.dtype, v.offset, t.shape, t.shape.length ? v.stride : []]);
    const kept = firstName.get(identity);
    if (kept !== undefined) {
      aliases.set(name, kept);
      continue;
    }
    firstName.set(identity, name);
    out.push([name, t]);
    bytes += t.data.byteLength;
  }
  await writeSafetensors(output, out, { format: "pt" });
  return { written: out.map(([n]) => n), aliases, bytes };
}
