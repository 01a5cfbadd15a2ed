/**
 * What a GGUF conversion needs from the base model: the architecture and head counts (for the Q/K
 * permutation), read from an HF `config.json` or from a base GGUF's own metadata; for a base model,
 * every hyperparameter llama.cpp reads. Configs llama.cpp would run differently are refused by name.
 */
import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { FileMissingError, FormatError, UnsupportedFeatureError } from "../errors.js";
import { numberValue, openGguf, stringValue } from "../formats/gguf/index.js";
import { archForGgufName, archForModelType, type GgufArchitecture } from "./gguf-arch.js";

export interface GgufBaseInfo {
  readonly arch: GgufArchitecture;
  readonly nHead: number;
  readonly nHeadKv: number;
  /** Embeddings tied to the output: llama.cpp then has no `output` tensor for an lm_head LoRA (undefined: not known). */
  readonly tied?: boolean;
  /** Lines to print (e.g. what llama.cpp will not represent). */
  readonly notes: readonly string[];
}

export interface HfHparams extends GgufBaseInfo {
  readonly modelType: string;
  readonly hidden: number;
  readonly nLayer: number;
  readonly ffn: number;
  readonly contextLength: number;
  readonly rmsEps: number;
  readonly ropeTheta: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly tied: boolean;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
}

/** Base info from `--base`: an HF model folder (config.json) or a base GGUF file. */
export async function readGgufBaseInfo(base: string): Promise<GgufBaseInfo> {
  if (!existsSync(base)) throw new FileMissingError(base, `${base}: --base not found (an HF model folder with config.json, or a base .gguf)`);
  if (statSync(base).isDirectory()) return readHfHparams(base);
  const h = await openGguf(base);
  const archName = stringValue(h.metadata, "general.architecture");
  if (archName === undefined) throw new FormatError(base, "general.architecture is missing");
  const arch = archForGgufName(archName, base);
  const nHead = numberValue(h.metadata, `${archName}.attention.head_count`);
  if (nHead === undefined) throw new FormatError(base, `${archName}.attention.head_count is missing`);
  const nHeadKv = numberValue(h.metadata, `${archName}.attention.head_count_kv`) ?? nHead;
  return { arch, nHead, nHeadKv, tied: !h.tensors.some((t) => t.name === "output.weight"), notes: [] };
}

function int(cfg: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new FormatError(file, `'${key}' is ${JSON.stringify(v) ?? "missing"}, expected a positive integer`);
  return v;
}

function firstId(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (Array.isArray(v) && typeof v[0] === "number") return v[0];
  return undefined;
}

/** Hyperparameters of an HF causal LM folder, refusing what llama.cpp's architecture would run differently. */
export async function readHfHparams(dir: string): Promise<HfHparams> {
  const file = join(dir, "config.json");
  if (!existsSync(file)) throw new FileMissingError(file, `${file}: no config.json in the base model folder`);
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new FormatError(file, `not JSON (${(err as Error).message})`);
  }
  const modelType = typeof cfg.model_type === "string" ? cfg.model_type : "(no model_type)";
  const arch = archForModelType(modelType, file);
  const nHead = int(cfg, "num_attention_heads", file);
  const hidden = int(cfg, "hidden_size", file);
  const headDim = int(cfg, "head_dim", file, hidden / nHead);
  const rope = (cfg.rope_parameters ?? cfg.rope_scaling ?? {}) as Record<string, unknown>;
  const ropeType = rope.rope_type ?? rope.type ?? "default";
  if (ropeType !== "default") throw new UnsupportedFeatureError("rope_parameters", `${file}: RoPE type '${String(ropeType)}' is not written to GGUF by loraport (only the default RoPE)`);
  if (modelType !== "qwen2" && cfg.attention_bias === true) throw new UnsupportedFeatureError("attention_bias", `${file}: attention_bias is not supported for ${modelType} GGUF`);
  if (cfg.mlp_bias === true) throw new UnsupportedFeatureError("mlp_bias", `${file}: mlp_bias is not supported for GGUF`);
  const notes: string[] = [];
  const contextLength = int(cfg, "max_position_embeddings", file);
  const sw = cfg.sliding_window;
  if (modelType !== "qwen2" && typeof sw === "number" && sw < contextLength) {
    notes.push(`note: ${modelType} sliding_window=${sw} is not represented in GGUF 'llama' (as llama.cpp's converter): outputs differ past ${sw} tokens`);
  }
  if (modelType === "qwen2" && cfg.use_sliding_window === true) throw new UnsupportedFeatureError("use_sliding_window", `${file}: qwen2 with use_sliding_window is not supported for GGUF`);
  const ropeTheta = typeof rope.rope_theta === "number" ? rope.rope_theta : typeof cfg.rope_theta === "number" ? cfg.rope_theta : 10000;
  return {
    arch, modelType, nHead, nHeadKv: int(cfg, "num_key_value_heads", file, nHead), notes,
    hidden, nLayer: int(cfg, "num_hidden_layers", file), ffn: int(cfg, "intermediate_size", file), contextLength,
    rmsEps: typeof cfg.rms_norm_eps === "number" ? cfg.rms_norm_eps : 1e-6, ropeTheta, headDim,
    vocabSize: int(cfg, "vocab_size", file), tied: cfg.tie_word_embeddings === true,
    bosTokenId: firstId(cfg.bos_token_id), eosTokenId: firstId(cfg.eos_token_id),
  };
}
