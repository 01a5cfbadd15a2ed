/**
 * loraport's base-model GGUF writer: an HF causal LM folder (config.json, safetensors, tokenizer.json) →
 * a GGUF model llama.cpp loads, with the hyperparameter keys, tensor names and Q/K permutation of
 * llama.cpp's `convert_hf_to_gguf.py` for the architectures in `gguf-arch.ts`. 1-D tensors (norms,
 * biases) stay F32 as llama.cpp's converter keeps them; matrices take `outtype`. Tensors are read,
 * converted and written one at a time (`mergeToGguf` streams merged tensors through the same plan).
 */
import { UnsupportedFeatureError } from "../errors.js";
import { LLAMA_FILE_TYPE, gguf, type GgufValue } from "../formats/gguf/index.js";
import { openSafetensorsModel } from "../formats/safetensors/index.js";
import { castTo, fromFloat32, toFloat32, type DType, type Tensor } from "../tensor/index.js";
import { ggufModuleName, permuteHeads, permuteRows } from "./gguf-arch.js";
import type { GgufOutType } from "./gguf-adapter.js";
import { readHfHparams, type HfHparams } from "./gguf-hparams.js";
import { writeGgufStreaming } from "./gguf-stream-writer.js";
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

/** Every metadata key of a base GGUF for the HF folder `dir`: hyperparameters, file type, tokenizer. */
export async function ggufBaseMetadata(dir: string, h: HfHparams, outtype: GgufOutType): Promise<Array<readonly [string, GgufValue]>> {
  const vocab = await ggufVocab(dir, h.vocabSize, {
    ...(h.bosTokenId !== undefined ? { bos: h.bosTokenId } : {}),
    ...(h.eosTokenId !== undefined ? { eos: h.eosTokenId } : {}),
  });
  const name = dir.split(/[\\/]/).filter(Boolean).pop() ?? "model";
  return [...hparamKeys(h, name), ["general.file_type", gguf.u32(LLAMA_FILE_TYPE[outtype])] as const, ...vocab];
}

/** One HF weight as it goes into the GGUF. */
export interface GgufBaseTensor {
  /** The safetensors key. */
  readonly key: string;
  /** The GGUF tensor name (`blk.0.attn_q.weight`). */
  readonly name: string;
  /** Q/K rows are permuted over this many heads (undefined: rows unchanged). */
  readonly heads: number | undefined;
}

/**
 * The GGUF tensors for the HF weights `keys`, in their order; weights llama.cpp has no tensor for are refused by
 * name. A tied `lm_head.weight` is left to llama.cpp's fallback to `token_embd` unless `keepHead` (a merge changed it).
 */
export function planGgufBase(h: HfHparams, keys: readonly string[], where: string, keepHead = false): GgufBaseTensor[] {
  const plan: GgufBaseTensor[] = [];
  for (const key of keys) {
    if (key.endsWith(".rotary_emb.inv_freq")) continue; // recomputed by llama.cpp
    if (key === "lm_head.weight" && h.tied && !keepHead) continue;
    const m = /^(.+)\.(weight|bias)$/.exec(key);
    const g = m ? ggufModuleName(m[1]!) : undefined;
    if (!m || g === undefined) throw new UnsupportedFeatureError("tensor", `${where}: weight '${key}' has no ${h.arch.name} GGUF tensor`);
    plan.push({ key, name: `${g}.${m[2]}`, heads: permuteHeads(h.arch, g, h) });
  }
  return plan;
}

/** The GGUF dtype of a tensor of `rank` dimensions: 1-D F32 (as llama.cpp's converter), matrices `outtype`. */
export function ggufDtype(rank: number, outtype: GgufOutType): DType {
  return rank === 1 ? "F32" : outtype;
}

/** An HF weight as the GGUF holds it: Q/K rows permuted where the architecture needs it, cast to its GGUF dtype. */
export function toGgufTensor(t: Tensor, entry: GgufBaseTensor, outtype: GgufOutType): Tensor {
  if (entry.heads !== undefined) {
    const rows = t.shape[0]!;
    const cols = t.shape.length === 2 ? t.shape[1]! : 1;
    t = fromFloat32(permuteRows(toFloat32(t), rows, cols, entry.heads, false, entry.key), t.dtype, t.shape);
  }
  return castTo(t, ggufDtype(t.shape.length, outtype));
}

export interface GgufModelReport {
  readonly tensors: number;
  readonly lines: readonly string[];
}

/** Write an HF model folder as a base GGUF at `out`. */
export async function writeGgufModel(dir: string, out: string, outtype: GgufOutType = "F32"): Promise<GgufModelReport> {
  const h = await readHfHparams(dir);
  const metadata = await ggufBaseMetadata(dir, h, outtype);
  const src = await openSafetensorsModel(dir);
  try {
    const plan = planGgufBase(h, src.names, dir);
    const byName = new Map(plan.map((e) => [e.name, e]));
    const planned = plan.map((e) => ({ name: e.name, dtype: ggufDtype(src.entry(e.key)!.shape.length, outtype), shape: src.entry(e.key)!.shape }));
    await writeGgufStreaming(out, metadata, planned, async (name) => {
      const e = byName.get(name)!;
      return toGgufTensor(await src.read(e.key), e, outtype);
    });
    return { tensors: plan.length, lines: [...h.notes, `wrote ${out}: ${h.arch.name} base model, ${plan.length} tensors, ${outtype}`] };
  } finally {
    await src.close();
  }
}
