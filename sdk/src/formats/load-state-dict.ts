/** One entry point for "give me the tensors in this file", whatever its format. */
import { FormatError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";
import { detectFormat } from "./detect.js";
import type { ReadOptions } from "./limits.js";
import { openSafetensorsModel } from "./safetensors/sharded.js";
import { LEGACY_TORCH_ADVICE, readTorchCheckpoint } from "./torch/checkpoint.js";

/**
 * A state dict from a safetensors file or model folder, or a torch.save zip checkpoint (chosen by content).
 * `options.limits` raises the read budgets (formats/limits.ts) for trusted files.
 */
export async function loadStateDict(path: string, options: ReadOptions = {}): Promise<Map<string, Tensor>> {
  const format = await detectFormat(path);
  switch (format) {
    case "safetensors": {
      const src = await openSafetensorsModel(path, options);
      try {
        const out = new Map<string, Tensor>();
        for (const name of src.names) out.set(name, await src.read(name));
        return out;
      } finally {
        await src.close();
      }
    }
    case "torch":
      return (await readTorchCheckpoint(path, options)).tensors;
    case "torch-legacy":
      throw new FormatError(path, LEGACY_TORCH_ADVICE);
    default:
      throw new FormatError(path, "neither a safetensors file nor a torch.save zip checkpoint");
  }
}
