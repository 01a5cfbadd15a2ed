/**
 * The architectures loraport writes as GGUF, and how llama.cpp names their tensors (gguf-py
 * `tensor_mapping.py` / `constants.py`): HF module paths ↔ GGUF tensor base names, and the Q/K row
 * permutation llama.cpp's `convert_hf_to_gguf.py` applies for the `llama` architecture (HF's rotate-half
 * RoPE → ggml's interleaved pairs). Mistral is written as `llama`, as llama.cpp's converter does.
 */
import { UnsupportedFeatureError } from "../errors.js";

export type GgufArchName = "llama" | "qwen2";

export interface GgufArchitecture {
  /** `general.architecture`. */
  readonly name: GgufArchName;
  /** Q and K rows are permuted (llama: yes; qwen2 uses NEOX RoPE as HF does: no). */
  readonly permuteQK: boolean;
}

/** HF `model_type` → the GGUF architecture llama.cpp's converter writes for it. */
const BY_MODEL_TYPE: Readonly<Record<string, GgufArchitecture>> = {
  llama: { name: "llama", permuteQK: true },
  mistral: { name: "llama", permuteQK: true },
  qwen2: { name: "qwen2", permuteQK: false },
};

/** GGUF architecture names loraport reads back. */
const BY_GGUF_NAME: Readonly<Record<string, GgufArchitecture>> = {
  llama: { name: "llama", permuteQK: true },
  qwen2: { name: "qwen2", permuteQK: false },
};

export const GGUF_MODEL_TYPES = Object.keys(BY_MODEL_TYPE);

export function archForModelType(modelType: string, where: string): GgufArchitecture {
  const a = BY_MODEL_TYPE[modelType];
  if (!a) throw new UnsupportedFeatureError("model_type", `${where}: architecture '${modelType}' is not supported for GGUF (supported: ${GGUF_MODEL_TYPES.join(", ")})`);
  return a;
}

export function archForGgufName(name: string, where: string): GgufArchitecture {
  const a = BY_GGUF_NAME[name];
  if (!a) throw new UnsupportedFeatureError("general.architecture", `${where}: GGUF architecture '${name}' is not supported (supported: ${Object.keys(BY_GGUF_NAME).join(", ")})`);
  return a;
}

/** Per-layer HF module suffix → GGUF name suffix (after `model.layers.N.` / `blk.N.`). */
const LAYER_MODULES: ReadonlyArray<readonly [string, string]> = [
  ["input_layernorm", "attn_norm"],
  ["self_attn.q_proj", "attn_q"],
  ["self_attn.k_proj", "attn_k"],
  ["self_attn.v_proj", "attn_v"],
  ["self_attn.o_proj", "attn_output"],
  ["post_attention_layernorm", "ffn_norm"],
  ["mlp.gate_proj", "ffn_gate"],
  ["mlp.up_proj", "ffn_up"],
  ["mlp.down_proj", "ffn_down"],
];
const TOP_MODULES: ReadonlyArray<readonly [string, string]> = [
  ["model.embed_tokens", "token_embd"],
  ["model.norm", "output_norm"],
  ["lm_head", "output"],
];

/** GGUF base name of an HF module path (`model.layers.3.self_attn.q_proj` → `blk.3.attn_q`), or undefined. */
export function ggufModuleName(hfModule: string): string | undefined {
  for (const [hf, g] of TOP_MODULES) if (hfModule === hf) return g;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfModule);
  if (!m) return undefined;
  const hit = LAYER_MODULES.find(([hf]) => hf === m[2]);
  return hit ? `blk.${m[1]}.${hit[1]}` : undefined;
}

/** HF module path of a GGUF base name (`blk.3.attn_q` → `model.layers.3.self_attn.q_proj`), or undefined. */
export function hfModuleName(ggufName: string): string | undefined {
  for (const [hf, g] of TOP_MODULES) if (ggufName === g) return hf;
  const m = /^blk\.(\d+)\.(.+)$/.exec(ggufName);
  if (!m) return undefined;
  const hit = LAYER_MODULES.find(([, g]) => g === m[2]);
  return hit ? `model.layers.${m[1]}.${hit[0]}` : undefined;
}

/** Heads a Q/K permutation needs for a module, or undefined when its rows stay as they are. */
export function permuteHeads(arch: GgufArchitecture, ggufName: string, heads: { nHead: number; nHeadKv: number }): number | undefined {
  if (!arch.permuteQK) return undefined;
  if (/\.attn_q$/.test(ggufName)) return heads.nHead;
  if (/\.attn_k$/.test(ggufName)) return heads.nHeadKv;
  return undefined;
}

/**
 * Reorder the rows of a row-major `[rows, cols]` matrix the way convert_hf_to_gguf's `permute` does:
 * per head, row `p·(hd/2) + i` moves to `2i + p` (`inverse` undoes it).
 */
export function permuteRows(data: Float32Array, rows: number, cols: number, nHead: number, inverse = false, where = "tensor"): Float32Array {
  if (rows % (2 * nHead) !== 0) throw new UnsupportedFeatureError("num_attention_heads", `${where}: ${rows} rows do not split into ${nHead} heads of an even size`);
  const hd = rows / nHead;
  const half = hd / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < nHead; h++) {
    for (let p = 0; p < 2; p++) {
      for (let i = 0; i < half; i++) {
        const hfRow = h * hd + p * half + i;
        const gRow = h * hd + 2 * i + p;
        const [from, to] = inverse ? [gRow, hfRow] : [hfRow, gRow];
        out.set(data.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}
