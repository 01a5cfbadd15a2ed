/**
 * loraport's base-model GGUF writer: an HF causal LM folder (config.json, safetensors, tokenizer.json) →
 * a GGUF model llama.cpp loads, with the hyperparameter keys, tensor names and Q/K permutation of
 * llama.cpp's `convert_hf_to_gguf.py` for the architectures in `gguf-arch.ts`. 1-D tensors (norms,
 * biases) stay F32 as llama.cpp's converter keeps them; matrices take `outtype`. The weights are held in
 * memory while writing.
 */
import { UnsupportedFeatureError } from "../errors.js";
import { LLAMA_FILE_TYPE, gguf, writeGguf, type GgufValue } from "../formats/gguf/index.js";
import { openSafetensorsModel } from "../formats/safetensors/index.js";
import { castTo, fromFloat32, toFloat32, type Tensor } from "../tensor/index.js";
import { ggufModuleName, permuteHeads, permuteRows } from "./gguf-arch.js";
import type { GgufOutType } from "./gguf-adapter.js";
import { readHfHparams, type HfHparams } from "./gguf-hparams.js";
import { ggufVocab } from "./gguf-vocab.js";

/** Hyperparameter keys llama.cpp reads for these architectures. */
function hparamKeys(h: HfHparams, name: string): Array<readonly [string, GgufValue]> {
  const a = h.arch.name;
  const keys: Array<readonly [string, GgufValue]> = [
    ["general.architecture", gguf.str(a)],
    ["general.type", gguf.str("model")],
    ["general.name", gguf.str(name)],
    [`${a}.block_count`, gguf.u32(h.nLayer)],
    [`${a}.context_length`, gguf.u32(h.contextLength)],
    [`${a}.embedding_length`, gguf.u32(h.hidden)],
    [`${a}.feed_forward_length`, gguf.u32(h.ffn)],
    [`${a}.attention.head_count`, gguf.u32(h.nHead)],
    [`${a}.attention.head_count_kv`, gguf.u32(h.nHeadKv)],
    [`${a}.rope.freq_base`, gguf.f32(h.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, gguf.f32(h.rmsEps)],
    [`${a}.rope.dimension_count`, gguf.u32(h.headDim)],
    [`${a}.vocab_size`, gguf.u32(h.vocabSize)],
  ];
  if (h.headDim * h.nHead !== h.hidden) {
    keys.push([`${a}.attention.key_length`, gguf.u32(h.headDim)], [`${a}.attention.value_length`, gguf.u32(h.headDim)]);
  }
  return keys;
}

export interface GgufModelReport {
  readonly tensors: number;
  readonly lines: readonly string[];
}

/** Write an HF model folder as a base GGUF at `out`. */
export async function writeGgufModel(dir: string, out: string, outtype: GgufOutType = "F32"): Promise<GgufModelReport> {
  const h = await readHfHparams(dir);
  const src = await openSafetensorsModel(dir);
  const tensors: Array<readonly [string, Tensor]> = [];
  try {
    for (const key of src.names) {
      if (key.endsWith(".rotary_emb.inv_freq")) continue; // recomputed by llama.cpp
      if (key === "lm_head.weight" && h.tied) continue; // llama.cpp falls back to token_embd
      const m = /^(.+)\.(weight|bias)$/.exec(key);
      const g = m ? ggufModuleName(m[1]!) : undefined;
      if (!m || g === undefined) throw new UnsupportedFeatureError("tensor", `${dir}: weight '${key}' has no ${h.arch.name} GGUF tensor`);
      let t = await src.read(key);
      const heads = permuteHeads(h.arch, g, h);
      if (heads !== undefined) {
        const rows = t.shape[0]!;
        const cols = t.shape.length === 2 ? t.shape[1]! : 1;
        t = fromFloat32(permuteRows(toFloat32(t), rows, cols, heads, false, key), t.dtype, t.shape);
      }
      tensors.push([`${g}.${m[2]}`, castTo(t, t.shape.length === 1 ? "F32" : outtype)]);
    }
  } finally {
    await src.close();
  }
  const vocab = await ggufVocab(dir, h.vocabSize, {
    ...(h.bosTokenId !== undefined ? { bos: h.bosTokenId } : {}),
    ...(h.eosTokenId !== undefined ? { eos: h.eosTokenId } : {}),
  });
  const name = dir.split(/[\\/]/).filter(Boolean).pop() ?? "model";
  const metadata = [...hparamKeys(h, name), ["general.file_type", gguf.u32(LLAMA_FILE_TYPE[outtype])] as const, ...vocab];
  await writeGguf(out, { metadata, tensors });
  return { tensors: tensors.length, lines: [...h.notes, `wrote ${out}: ${h.arch.name} base model, ${tensors.length} tensors, ${outtype}`] };
}
