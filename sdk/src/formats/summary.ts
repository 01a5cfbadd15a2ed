/** What a weights file holds (names, dtypes, shapes, sizes, metadata), for `loraport inspect` and callers alike. */
import { FormatError } from "../errors.js";
import type { DType } from "../tensor/dtype.js";
import { detectFormat } from "./detect.js";
import type { ReadOptions } from "./limits.js";
import { openSafetensorsModel } from "./safetensors/sharded.js";
import { LEGACY_TORCH_ADVICE, readTorchCheckpoint } from "./torch/checkpoint.js";

export interface WeightsSummary {
  readonly format: "safetensors" | "torch";
  readonly tensors: ReadonlyArray<{ name: string; dtype: DType; shape: number[]; byteLength: number }>;
  readonly metadata: Readonly<Record<string, string>>;
  /** The files read (one, or every shard of a sharded checkpoint). */
  readonly files: readonly string[];
}

/** Summarise a safetensors file, a (sharded) model folder or index, or a torch.save checkpoint. */
export async function summariseWeights(path: string, options: ReadOptions = {}): Promise<WeightsSummary> {
  const format = await detectFormat(path);
  if (format === "safetensors") {
    // Header only: no tensor data is read.
    const src = await openSafetensorsModel(path, options);
    try {
      const tensors = src.names.map((name) => {
        const e = src.entry(name)!;
        return { name, dtype: e.dtype, shape: [...e.shape], byteLength: e.byteLength };
      });
      return { format, tensors, metadata: { ...src.metadata }, files: [...src.shards] };
    } finally {
      await src.close();
    }
  }
  if (format === "torch") {
    const { tensors } = await readTorchCheckpoint(path, options);
    return {
      format,
      tensors: [...tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: [...t.shape], byteLength: t.data.byteLength })),
      metadata: {},
      files: [path],
    };
  }
  if (format === "torch-legacy") throw new FormatError(path, LEGACY_TORCH_ADVICE);
  throw new FormatError(path, "neither a safetensors file nor a torch.save zip checkpoint");
}
