/**
 * An adapter as ONNX Runtime's own adapter file (`.onnx_adapter`) for an adapter-inputs export, so ORT GenAI, C# and
 * Python users load loraport's adapters with `RunOptions.add_active_adapter` instead of feeding inputs. The file holds
 * exactly the graph inputs an adapter sets, named as the graph names them: every module's factor tables with one slot
 * (`A [1, r, in]`, `B·s [1, out, r]`, scaling folded into B; rank at least 1, zeros where the adapter leaves a module
 * alone, as the session worker builds them) and the whole-tensor head inputs (the adapter's own, else the base's).
 * The caller still feeds the model inputs and `lora_index` (zeros, one per batch row: slot 0 of the tables).
 */
import { join } from "node:path";
import { readSafetensors } from "../formats/safetensors/index.js";
import { writeOnnxAdapter, type OnnxAdapterParameter, type OnnxAdapterWriteOptions } from "../formats/onnx-adapter/index.js";
import { UnsupportedFeatureError } from "../errors.js";
import { adapterFeeds, baseFeeds, type AdapterSource } from "./adapter-feeds.js";
import { readManifest } from "./manifest.js";
import type { WireTensor } from "./worker-protocol.js";

export interface OnnxAdapterExport {
  /** The file written. */
  readonly path: string;
  readonly bytes: number;
  /** Graph input names the file sets, in file order. */
  readonly parameters: readonly string[];
  /** The graph input the caller feeds with zeros (`[batch]`, int64): each row's slot in the one-slot tables. */
  readonly loraIndexInput: string;
}

function f32Bytes(x: Float32Array): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

/** One-slot factor tables: what the session worker builds for one adapter, rank padded to at least 1. */
function tables(a: WireTensor, b: WireTensor, inFeatures: number, outFeatures: number): [OnnxAdapterParameter["dims"], Float32Array, OnnxAdapterParameter["dims"], Float32Array] {
  const r = a.dims[0]!;
  if (r > 0) return [[1, r, inFeatures], a.data as Float32Array, [1, outFeatures, r], b.data as Float32Array];
  // ORT's batched MatMul over an empty inner dimension is not reliably zero: rank 1 of zeros instead.
  return [[1, 1, inFeatures], new Float32Array(inFeatures), [1, outFeatures, 1], new Float32Array(outFeatures)];
}

/**
 * Write `source` (an adapter read by loraport, or its factors) as an `.onnx_adapter` for the adapter-inputs export in
 * `exportDir`. The adapter is checked against the export first (modules and shapes), as `LoraModel` does.
 */
export async function exportOnnxAdapter(exportDir: string, source: AdapterSource, out: string, options: OnnxAdapterWriteOptions = {}): Promise<OnnxAdapterExport> {
  const manifest = readManifest(exportDir);
  if (manifest.mode !== "adapter-inputs" || !manifest.lora_index_input) {
    throw new UnsupportedFeatureError(
      "onnx_adapter",
      `${exportDir} is a ${manifest.mode} export${manifest.mode === "adapter-inputs" ? " of an earlier version (no factor tables)" : ""}: an .onnx_adapter sets the LoRA inputs of an adapter-inputs export (loraport export --mode adapter-inputs)`,
    );
  }
  const feeds = adapterFeeds(manifest, source);
  const parameters: OnnxAdapterParameter[] = [];
  for (const e of manifest.lora) {
    const [aDims, a, bDims, b] = tables(feeds[e.a_input]!, feeds[e.b_input]!, e.in_features, e.out_features);
    parameters.push({ name: e.a_input, dtype: "F32", dims: aDims, data: f32Bytes(a) });
    parameters.push({ name: e.b_input, dtype: "F32", dims: bDims, data: f32Bytes(b) });
  }
  for (const t of manifest.tokens ?? []) {
    // One-slot token tables, at least one id (-1 matches none), as the session worker builds them.
    const ids = feeds[t.ids_input]!.data as BigInt64Array;
    const n = Math.max(1, ids.length);
    const idTable = new BigInt64Array(n).fill(-1n);
    idTable.set(ids);
    const rows = new Float32Array(n * t.embedding_dim);
    rows.set(feeds[t.rows_input]!.data as Float32Array);
    parameters.push({ name: t.ids_input, dtype: "I64", dims: [1, n], data: new Uint8Array(idTable.buffer) });
    parameters.push({ name: t.rows_input, dtype: "F32", dims: [1, n, t.embedding_dim], data: f32Bytes(rows) });
  }
  if (manifest.heads.length > 0) {
    const defaults = manifest.head_defaults_file ? (await readSafetensors(join(exportDir, manifest.head_defaults_file))).tensors : new Map();
    const base = baseFeeds(manifest, defaults);
    for (const h of manifest.heads) {
      const t = feeds[h.input] ?? base[h.input]!;
      parameters.push({ name: h.input, dtype: "F32", dims: [...t.dims], data: f32Bytes(t.data as Float32Array) });
    }
  }
  const bytes = await writeOnnxAdapter(out, parameters, options);
  return { path: out, bytes, parameters: parameters.map((p) => p.name), loraIndexInput: manifest.lora_index_input };
}
