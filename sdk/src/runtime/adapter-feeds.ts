/**
 * An adapter as the graph's LoRA inputs: for every module the export targeted, `A [r, in]` and `B·s [out, r]`
 * from the adapter, or rank-0 tensors where the adapter leaves the module alone. Checks the adapter against
 * the exported graph first, so a base/adapter mismatch fails here with the module named.
 */
import type { LoraAdapter } from "../adapter/adapter.js";
import { adapterFactors, type ModuleFactors } from "../adapter/factors.js";
import { ShapeMismatchError, UnsupportedFeatureError } from "../errors.js";
import type { OnnxManifest } from "./manifest.js";
import type { WireTensor } from "./worker-protocol.js";

/** An adapter read by loraport's readers, or its factors already computed (`adapterFactors`). */
export type AdapterSource = LoraAdapter | ReadonlyMap<string, ModuleFactors>;

const PEFT_PREFIX = "base_model.model.";

function factorsOf(source: AdapterSource): ReadonlyMap<string, ModuleFactors> {
  if (source instanceof Map) return source as ReadonlyMap<string, ModuleFactors>;
  const adapter = source as LoraAdapter;
  if (adapter.extraTensors.size > 0) {
    const names = [...adapter.extraTensors.keys()];
    throw new UnsupportedFeatureError(
      "modules_to_save",
      `the adapter also carries whole tensors (${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""}) that an adapter-inputs graph cannot take; export it merged (loraport export --mode merged --adapter …)`,
    );
  }
  return adapterFactors(adapter);
}

/** Rank-0 factors for every exported module: the base model. */
export function baseFeeds(manifest: OnnxManifest): Record<string, WireTensor> {
  const feeds: Record<string, WireTensor> = {};
  for (const e of manifest.lora) {
    feeds[e.a_input] = { type: "float32", dims: [0, e.in_features], data: new Float32Array(0) };
    feeds[e.b_input] = { type: "float32", dims: [e.out_features, 0], data: new Float32Array(0) };
  }
  return feeds;
}

export function adapterFeeds(manifest: OnnxManifest, source: AdapterSource): Record<string, WireTensor> {
  const byModule = new Map(manifest.lora.map((e) => [e.module, e]));
  const feeds = baseFeeds(manifest);
  // Factors computed here are ours to hand over (their buffers are transferred to the worker); caller-owned ones are copied.
  const owned = !(source instanceof Map);
  const take = (x: Float32Array): Float32Array => (owned && x.byteOffset === 0 && x.byteLength === x.buffer.byteLength ? x : new Float32Array(x));
  for (const [rawName, f] of factorsOf(source)) {
    const name = rawName.startsWith(PEFT_PREFIX) ? rawName.slice(PEFT_PREFIX.length) : rawName;
    const entry = byModule.get(name);
    if (!entry) {
      throw new ShapeMismatchError(
        name,
        `the adapter adapts this module but the exported graph has no LoRA inputs for it (exported targets: ${manifest.targets.join(", ") || "none"}; ${manifest.lora.length} modules). Wrong base model, or re-export with --targets`,
      );
    }
    if (f.in !== entry.in_features || f.out !== entry.out_features) {
      throw new ShapeMismatchError(name, `adapter factors are ${f.out}×${f.in} (out×in) but the base module is ${entry.out_features}×${entry.in_features}: adapter made for another base model`, [entry.out_features, entry.in_features], [f.out, f.in]);
    }
    if (f.A.length !== f.r * f.in || f.B.length !== f.out * f.r) {
      throw new ShapeMismatchError(name, `factor sizes do not match rank ${f.r}`, [f.r, f.in], [f.A.length / Math.max(f.in, 1), f.in]);
    }
    feeds[entry.a_input] = { type: "float32", dims: [f.r, f.in], data: take(f.A) };
    feeds[entry.b_input] = { type: "float32", dims: [f.out, f.r], data: take(f.B) };
  }
  return feeds;
}
