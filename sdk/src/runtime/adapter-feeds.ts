/**
 * An adapter as the graph's LoRA inputs: for every module the export targeted, `A [r, in]` and `B·s [out, r]`
 * from the adapter, or rank-0 tensors where the adapter leaves the module alone. Checks the adapter against
 * the exported graph first, so a base/adapter mismatch fails here with the module named.
 */
import type { LoraAdapter } from "../adapter/adapter.js";
import { adapterFactors, type ModuleFactors } from "../adapter/factors.js";
import { ShapeMismatchError, UnsupportedFeatureError } from "../errors.js";
import { toFloat32, type Tensor } from "../tensor/index.js";
import { baseTokenFeeds, embeddingFeeds, reexportForEmbedding } from "./embedding-feeds.js";
import type { OnnxManifest } from "./manifest.js";
import type { WireTensor } from "./worker-protocol.js";

/** An adapter read by loraport's readers, or its factors already computed (`adapterFactors`). */
export type AdapterSource = LoraAdapter | ReadonlyMap<string, ModuleFactors>;

const PEFT_PREFIX = "base_model.model.";

function factorsOf(source: AdapterSource): ReadonlyMap<string, ModuleFactors> {
  if (source instanceof Map) return source as ReadonlyMap<string, ModuleFactors>;
  return adapterFactors(source as LoraAdapter);
}

/** The adapter's whole tensors (modules_to_save, e.g. a classifier head): fed through the graph's head inputs, else refused. */
function headsOf(manifest: OnnxManifest, source: AdapterSource, consumed: ReadonlySet<string>): Record<string, WireTensor> {
  if (source instanceof Map) return {};
  const byParam = new Map(manifest.heads.map((h) => [h.param, h]));
  const feeds: Record<string, WireTensor> = {};
  const refused: string[] = [];
  for (const [rawName, t] of (source as LoraAdapter).extraTensors) {
    if (consumed.has(rawName)) continue;
    const name = rawName.startsWith(PEFT_PREFIX) ? rawName.slice(PEFT_PREFIX.length) : rawName;
    const head = byParam.get(name);
    if (!head) {
      refused.push(name);
      continue;
    }
    if (t.shape.length !== head.shape.length || t.shape.some((d, i) => d !== head.shape[i])) {
      throw new ShapeMismatchError(name, `adapter tensor is [${t.shape.join(", ")}] but the base's is [${head.shape.join(", ")}]: adapter made for another base model`, head.shape, t.shape);
    }
    feeds[head.input] = { type: "float32", dims: [...head.shape], data: toFloat32(t, true) };
  }
  if (refused.length > 0) {
    throw new UnsupportedFeatureError(
      "modules_to_save",
      `the adapter also carries whole tensors (${refused.slice(0, 3).join(", ")}${refused.length > 3 ? ", …" : ""}) that this graph has no inputs for (head inputs: ${manifest.heads.map((h) => h.param).join(", ") || "none"}); export it merged (loraport export --mode merged --adapter …)`,
    );
  }
  return feeds;
}

function baseFeedsWithoutHeads(manifest: OnnxManifest): Record<string, WireTensor> {
  return baseFeeds({ ...manifest, heads: [] });
}

/** Rank-0 factors for every exported module and the base's own head values: the base model. */
export function baseFeeds(manifest: OnnxManifest, headDefaults: ReadonlyMap<string, Tensor> = new Map()): Record<string, WireTensor> {
  const feeds: Record<string, WireTensor> = {};
  for (const h of manifest.heads) {
    const t = headDefaults.get(h.param);
    if (!t) throw new ShapeMismatchError(h.param, `no default value for head input '${h.input}' (head defaults file incomplete)`);
    feeds[h.input] = { type: "float32", dims: [...h.shape], data: toFloat32(t, true) };
  }
  for (const e of manifest.lora) {
    feeds[e.a_input] = { type: "float32", dims: [0, e.in_features], data: new Float32Array(0) };
    feeds[e.b_input] = { type: "float32", dims: [e.out_features, 0], data: new Float32Array(0) };
  }
  return { ...feeds, ...baseTokenFeeds(manifest) };
}

/**
 * Every graph input for `source`. Head inputs the adapter does not carry are left out: the worker fills them from
 * the base feeds (kept there once), so registering an adapter does not copy the base head.
 */
export function adapterFeeds(manifest: OnnxManifest, source: AdapterSource): Record<string, WireTensor> {
  const byModule = new Map(manifest.lora.map((e) => [e.module, e]));
  // Trainable tokens and saved embedding weights first: what they consume is not a whole-tensor head.
  const embedding = source instanceof Map ? { feeds: {}, consumed: new Set<string>() } : embeddingFeeds(manifest, source as LoraAdapter);
  const feeds: Record<string, WireTensor> = { ...baseFeedsWithoutHeads(manifest), ...headsOf(manifest, source, embedding.consumed), ...embedding.feeds };
  // Factors computed here are ours to hand over (their buffers are transferred to the worker); caller-owned ones are copied.
  const owned = !(source instanceof Map);
  const take = (x: Float32Array): Float32Array => (owned && x.byteOffset === 0 && x.byteLength === x.buffer.byteLength ? x : new Float32Array(x));
  for (const [rawName, f] of factorsOf(source)) {
    const name = rawName.startsWith(PEFT_PREFIX) ? rawName.slice(PEFT_PREFIX.length) : rawName;
    const entry = byModule.get(name);
    if (!entry && f.kind === "embedding") throw reexportForEmbedding(manifest, name);
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
