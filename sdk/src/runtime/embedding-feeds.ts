/**
 * What PEFT saves beside an embedding adapter, as an adapter-inputs graph takes it (embedding LoRA itself goes through
 * the factor tables like any module):
 * - `trainable_token_indices`: `<emb>.token_adapter.trainable_tokens_delta` holds replacement rows for the listed ids,
 *   fed as the embedding's token inputs (ids `[n]`, rows `[n, dim]`); the graph swaps those rows in per batch row
 *   (and in the tied LM head's logits, as PEFT does).
 * - `save_embedding_layers`: `<emb>.base_layer.weight` (or `lm_head.weight`), a whole embedding weight. When it is
 *   the export's own base weight (same F32 bytes, `base_weights_sha256`: PEFT saves the unchanged base weight) it
 *   changes nothing and is dropped; any other value (a resized or retrained vocabulary) is refused: merge it. (A whole
 *   [vocab, dim] input per request would cost a vocabulary-sized copy per run and could not differ per batch row.)
 * Anything here that an export lacks the inputs for is refused with what to do (re-export, or merge).
 */
import { createHash } from "node:crypto";
import type { LoraAdapter } from "../adapter/adapter.js";
import { tokenIndices, TOKENS_SUFFIX } from "../adapter/saved-layers.js";
import { AdapterError, ShapeMismatchError, UnsupportedFeatureError } from "../errors.js";
import { toFloat32 } from "../tensor/index.js";
import type { OnnxManifest } from "./manifest.js";
import type { WireTensor } from "./worker-protocol.js";

const PEFT_PREFIX = "base_model.model.";
const SAVED_SUFFIX = ".base_layer.weight";

export interface EmbeddingFeeds {
  /** Token inputs by graph input name. */
  readonly feeds: Record<string, WireTensor>;
  /** The adapter's `extraTensors` keys handled here (not whole-tensor heads). */
  readonly consumed: ReadonlySet<string>;
}

const strip = (name: string): string => (name.startsWith(PEFT_PREFIX) ? name.slice(PEFT_PREFIX.length) : name);

/** The adapter's trainable tokens and saved embedding weights, checked against the export. */
export function embeddingFeeds(manifest: OnnxManifest, adapter: LoraAdapter): EmbeddingFeeds {
  const feeds: Record<string, WireTensor> = {};
  const consumed = new Set<string>();
  const tokenEntries = new Map((manifest.tokens ?? []).map((t) => [t.module, t]));
  const embeddings = new Map(manifest.lora.filter((e) => e.kind === "embedding").map((e) => [e.module, e]));
  for (const [key, t] of adapter.extraTensors) {
    if (key.endsWith(TOKENS_SUFFIX)) {
      const rawModule = key.slice(0, -TOKENS_SUFFIX.length);
      const module = strip(rawModule);
      const entry = tokenEntries.get(module);
      if (!entry) {
        throw new UnsupportedFeatureError(
          "trainable_token_indices",
          `${key}: this export has no trainable-token inputs for ${module} (${manifest.tokens ? `it has them for ${[...tokenEntries.keys()].join(", ") || "none"}` : "exported without the embedding in --targets, or by an earlier loraport"}); re-export with the embedding among --targets (e.g. --targets ${[...manifest.targets, module.split(".").pop()].join(",")}), or merge the adapter instead (loraport merge; trainable tokens on a Linear layer, such as an untied lm_head, can only be merged)`,
        );
      }
      const ids = tokenIndices(adapter.config.trainable_token_indices, rawModule, key);
      const dim = entry.embedding_dim;
      if (t.shape.length !== 2 || t.shape[0] !== ids.length || t.shape[1] !== dim) {
        throw new ShapeMismatchError(key, `trainable_tokens_delta has shape [${t.shape.join(", ")}] but ${ids.length} token ids of the export's ${module} (width ${dim}) need [${ids.length}, ${dim}]`, [ids.length, dim], t.shape);
      }
      const bad = ids.find((i) => i >= entry.num_embeddings);
      if (bad !== undefined) throw new AdapterError(`trainable_token_indices: token id ${bad} is outside the export's ${module} (${entry.num_embeddings} rows): adapter made for another base (or a resized vocabulary: merge instead)`);
      const rows = toFloat32(t);
      // A repeated id keeps its last row, as index_copy leaves it; the graph then sees each id once.
      const last = new Map<number, number>();
      ids.forEach((id, j) => last.set(id, j));
      const order = [...last.entries()];
      const outIds = new BigInt64Array(order.length);
      const outRows = new Float32Array(order.length * dim);
      order.forEach(([id, j], k) => {
        outIds[k] = BigInt(id);
        outRows.set(rows.subarray(j * dim, (j + 1) * dim), k * dim);
      });
      feeds[entry.ids_input] = { type: "int64", dims: [order.length], data: outIds };
      feeds[entry.rows_input] = { type: "float32", dims: [order.length, dim], data: outRows };
      consumed.add(key);
    } else {
      // save_embedding_layers: `<emb>.base_layer.weight` beside the embedding's LoRA, or `lm_head.weight` / `<emb>.weight`.
      // (PEFT saves `<m>.base_layer.weight` for any adapted layer it saves whole: a tied lm_head with LoRA too.)
      const module = key.endsWith(SAVED_SUFFIX) ? key.slice(0, -SAVED_SUFFIX.length) : undefined;
      const adapted = module !== undefined ? adapter.modules.get(module) : undefined;
      if (adapted?.kind === "embedding" && !embeddings.has(strip(module!))) throw reexportForEmbedding(manifest, strip(module!));
      const param = adapted ? `${strip(module!)}.weight` : strip(key);
      const want = manifest.base_weights_sha256?.[param];
      if (want === undefined) continue; // not an embedding weight: a whole-tensor head, or refused as one
      const f32 = toFloat32(t);
      const hash = `sha256:${createHash("sha256").update(new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength)).digest("hex")}`;
      if (hash !== want) {
        const entry = embeddings.get(param.slice(0, -".weight".length));
        const resized = entry !== undefined && (t.shape.length !== 2 || t.shape[0] !== entry.in_features || t.shape[1] !== entry.out_features);
        throw new UnsupportedFeatureError(
          "save_embedding_layers",
          `${key}: the adapter's saved ${param} ${resized ? `is [${t.shape.join(", ")}] (a resized vocabulary) where the export's base has [${entry!.in_features}, ${entry!.out_features}]` : "differs from the export's base weight"} (PEFT loads it in place of the base's); a whole embedding cannot be swapped per request: merge the adapter instead (loraport merge, then export the merged model)`,
        );
      }
      consumed.add(key);
    }
  }
  return { feeds, consumed };
}

/** LoRA on an embedding the export has no inputs for: the export predates embedding serving or left it out of --targets. */
export function reexportForEmbedding(manifest: OnnxManifest, module: string): UnsupportedFeatureError {
  return new UnsupportedFeatureError(
    "lora_embedding",
    `${module}: the adapter has LoRA on this embedding but the export has no embedding inputs for it (exported without it in --targets, or by an earlier loraport); re-export with it among --targets (e.g. --targets ${[...manifest.targets, module.split(".").pop()].join(",")}), or merge the adapter instead (loraport merge)`,
  );
}

/** Empty token inputs for every token entry: the base model (and adapters without trainable tokens). */
export function baseTokenFeeds(manifest: OnnxManifest): Record<string, WireTensor> {
  const feeds: Record<string, WireTensor> = {};
  for (const t of manifest.tokens ?? []) {
    feeds[t.ids_input] = { type: "int64", dims: [0], data: new BigInt64Array(0) };
    feeds[t.rows_input] = { type: "float32", dims: [0, t.embedding_dim], data: new Float32Array(0) };
  }
  return feeds;
}
