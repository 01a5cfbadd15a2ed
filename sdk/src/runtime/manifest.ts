/**
 * The manifest beside an exported model (`loraport-onnx.json`, schema `schemas/onnx-manifest.schema.json`),
 * written by the sidecar's exporter. Read and checked here so a wrong folder fails on load, naming the field.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileMissingError, FormatError } from "../errors.js";

export const MANIFEST_NAME = "loraport-onnx.json";

export type ExportMode = "adapter-inputs" | "merged";

export interface ValueInfo {
  readonly name: string;
  readonly dtype: string;
  /** Strings are symbolic (dynamic) dimensions. */
  readonly shape: readonly (number | string)[];
}

/** One adapted module: which graph inputs carry its factors. */
export interface LoraInputEntry {
  /** Module path in the base model (no `base_model.model.` prefix), as `adapterFactors` keys it. */
  readonly module: string;
  readonly peft_module: string;
  /** The A table `[slots, rank, in_features]`: one slot per adapter the worker holds (an adapter's A is `[rank, in]`). */
  readonly a_input: string;
  /** The B table `[slots, out_features, rank]`, scaling folded in (an adapter's B is `[out, rank]`). */
  readonly b_input: string;
  readonly in_features: number;
  readonly out_features: number;
  readonly fan_in_fan_out: boolean;
  /** `embedding`: an nn.Embedding (in = num_embeddings, out = dim; rows of A gathered by token id). Absent: a projection. */
  readonly kind?: "embedding";
}

/**
 * An embedding's trainable-token inputs (PEFT `trainable_token_indices`): per adapter slot the token ids
 * (`[slots, n]` int64, -1 = none) and their replacement rows (`[slots, n, dim]`). Exports of earlier versions and
 * exports without an embedding target have none.
 */
export interface TokenInputEntry {
  readonly module: string;
  readonly ids_input: string;
  readonly rows_input: string;
  readonly num_embeddings: number;
  readonly embedding_dim: number;
  /** The LM head tied to this embedding (tie_word_embeddings): its logits for the trainable ids use the new rows too, as in PEFT. */
  readonly tied_head: string | null;
}

/** A head parameter (e.g. `classifier.dense.weight`) given to the graph as a whole tensor. */
export interface HeadInputEntry {
  /** Parameter name in the base model, as an adapter's `extraTensors` keys it. */
  readonly param: string;
  readonly input: string;
  readonly shape: readonly number[];
}

/** The KV cache of a causal-LM graph: `past_key_values.{i}.key/.value` in, `present.{i}.key/.value` out. */
export interface KvCacheLayout {
  readonly layers: number;
  readonly kv_heads: number;
  readonly head_dim: number;
  readonly dtype: "float32" | "float16";
  /** Input names, layer by layer, key then value: `[batch, kv_heads, past, head_dim]`. */
  readonly past_inputs: readonly string[];
  /** Output names in the same order: past + the new tokens. */
  readonly present_outputs: readonly string[];
  readonly position_ids_input: string;
}

/** What generation needs: the cache layout, token ids that stop or pad, where the tokenizer is. */
export interface GenerationInfo {
  readonly kv_cache: KvCacheLayout;
  /** Prompt + new tokens may not exceed this (`n_positions` / `max_position_embeddings`). */
  readonly max_positions: number | null;
  readonly bos_token_id: number | null;
  /** Every id that ends a sequence (generation_config.json, else config.json). */
  readonly eos_token_ids: readonly number[];
  readonly pad_token_id: number | null;
  /** Folder (relative to the export) with tokenizer.json; null when the base had none. */
  readonly tokenizer: string | null;
  readonly tokenizer_files: readonly string[];
}

export interface OnnxManifest {
  readonly format: "loraport-onnx";
  readonly version: 1;
  readonly mode: ExportMode;
  readonly model_file: string;
  readonly external_data: readonly string[];
  readonly opset: number;
  readonly ir_version: number;
  readonly task: "causal-lm" | "sequence-classification";
  readonly model_type: string;
  readonly config: Readonly<Record<string, unknown>>;
  readonly base: { readonly path: string; readonly checksum: string; readonly source_dtype: string };
  readonly targets: readonly string[];
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  readonly lora: readonly LoraInputEntry[];
  /** adapter-inputs: the int64 `[batch]` input with each row's slot in the factor tables; null when merged. */
  readonly lora_index_input?: string | null;
  /** Whole-tensor head inputs (adapter-inputs exports of classification models); fed from the adapter or `head_defaults_file`. */
  readonly heads: readonly HeadInputEntry[];
  readonly head_defaults_file: string | null;
  readonly adapter: { readonly path: string; readonly config: Readonly<Record<string, unknown>> } | null;
  /** True when the LoRA inputs have default initializers, for ORT's `.onnx_adapter` (not for onnxruntime-node). */
  readonly lora_defaults?: boolean;
  /** Causal LMs exported with a KV cache; null or absent otherwise (exports of earlier versions have none). */
  readonly generation?: GenerationInfo | null;
  /** Trainable-token inputs of the embedding targets; absent when there are none. */
  readonly tokens?: readonly TokenInputEntry[];
  /**
   * With embedding targets: `sha256:` of the F32 bytes of the input and output embedding weights, by parameter name
   * (e.g. `model.embed_tokens.weight`, `lm_head.weight`), to recognise an adapter's saved copy of the base's.
   */
  readonly base_weights_sha256?: Readonly<Record<string, string>>;
}

/** Read `<dir>/loraport-onnx.json` and check the fields the runtime relies on. */
export function readManifest(dir: string): OnnxManifest {
  const file = join(dir, MANIFEST_NAME);
  if (!existsSync(file)) {
    throw new FileMissingError(file, `${file}: no such file (expected a folder written by 'loraport export')`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new FormatError(file, `not valid JSON: ${(err as Error).message}`);
  }
  const m = raw as Partial<OnnxManifest>;
  const need = (ok: boolean, field: string, expected: string): void => {
    if (!ok) throw new FormatError(file, `field '${field}': expected ${expected}`);
  };
  need(typeof raw === "object" && raw !== null, "(root)", "an object");
  need(m.format === "loraport-onnx", "format", "'loraport-onnx'");
  need(m.version === 1, "version", "1 (this loraport reads manifest version 1)");
  need(m.mode === "adapter-inputs" || m.mode === "merged", "mode", "'adapter-inputs' or 'merged'");
  need(typeof m.model_file === "string", "model_file", "a file name");
  need(Array.isArray(m.inputs) && Array.isArray(m.outputs), "inputs/outputs", "arrays of {name, dtype, shape}");
  need(Array.isArray(m.lora), "lora", "an array");
  need(m.task === "causal-lm" || m.task === "sequence-classification", "task", "'causal-lm' or 'sequence-classification'");
  for (const [i, e] of (m.lora ?? []).entries()) {
    need(
      typeof e.module === "string" && typeof e.a_input === "string" && typeof e.b_input === "string" &&
        Number.isInteger(e.in_features) && Number.isInteger(e.out_features),
      `lora[${i}]`,
      "{module, a_input, b_input, in_features, out_features}",
    );
  }
  need(m.tokens === undefined || Array.isArray(m.tokens), "tokens", "an array when present");
  for (const [i, t] of (m.tokens ?? []).entries()) {
    need(typeof t.module === "string" && typeof t.ids_input === "string" && typeof t.rows_input === "string" &&
      Number.isInteger(t.num_embeddings) && Number.isInteger(t.embedding_dim) && (t.tied_head === null || typeof t.tied_head === "string"),
    `tokens[${i}]`, "{module, ids_input, rows_input, num_embeddings, embedding_dim, tied_head}");
  }
  need(Array.isArray(m.heads) && (m.heads.length === 0 || typeof m.head_defaults_file === "string"), "heads/head_defaults_file", "an array, and a file name when it is not empty");
  for (const [i, h] of (m.heads ?? []).entries()) {
    need(typeof h.param === "string" && typeof h.input === "string" && Array.isArray(h.shape), `heads[${i}]`, "{param, input, shape}");
  }
  if (m.head_defaults_file) {
    const p = join(dir, m.head_defaults_file);
    if (!existsSync(p)) throw new FileMissingError(p, `${p}: head defaults named by ${file} are missing`);
  }
  if (m.generation != null) {
    const g = m.generation;
    const kv = g.kv_cache;
    need(typeof kv === "object" && kv !== null && Number.isInteger(kv.layers) && Number.isInteger(kv.kv_heads) && Number.isInteger(kv.head_dim) &&
      Array.isArray(kv.past_inputs) && Array.isArray(kv.present_outputs) && kv.past_inputs.length === 2 * kv.layers && kv.present_outputs.length === 2 * kv.layers &&
      typeof kv.position_ids_input === "string", "generation.kv_cache", "{layers, kv_heads, head_dim, past_inputs, present_outputs (2 per layer), position_ids_input}");
    need(Array.isArray(g.eos_token_ids) && g.eos_token_ids.every((x) => Number.isInteger(x)), "generation.eos_token_ids", "an array of token ids");
    need(g.tokenizer === null || typeof g.tokenizer === "string", "generation.tokenizer", "a folder name or null");
  }
  const model = join(dir, m.model_file!);
  if (!existsSync(model)) throw new FileMissingError(model, `${model}: no such file (named by ${file})`);
  for (const ext of m.external_data ?? []) {
    const p = join(dir, ext);
    if (!existsSync(p)) throw new FileMissingError(p, `${p}: external-data file named by ${file} is missing`);
  }
  return m as OnnxManifest;
}
