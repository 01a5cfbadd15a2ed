/**
 * A base GGUF's tokenizer keys from a Hugging Face `tokenizer.json`: byte-level BPE only (llama.cpp's
 * `gpt2` tokenizer model with the GPT-2 pre-tokenizer regex, which is what transformers' ByteLevel
 * pre-tokenizer with `use_regex` applies). Tokens past the tokenizer's size up to the model's vocab are
 * padded as UNUSED, as llama.cpp's converter does. Anything else is refused by name.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { FileMissingError, FormatError, UnsupportedFeatureError } from "../errors.js";
import { GgufType, gguf, type GgufValue } from "../formats/gguf/index.js";

/** llama.cpp's token types (`llama_token_type`). */
const NORMAL = 1;
const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]>; byte_fallback?: boolean };
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
  pre_tokenizer?: { type?: string; use_regex?: boolean; pretokenizers?: unknown } | null;
  normalizer?: unknown;
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return undefined;
}

/** Tokenizer KVs for a base GGUF; `vocabSize` is the model's embedding rows. */
export async function ggufVocab(dir: string, vocabSize: number, ids: { bos?: number; eos?: number }): Promise<Array<readonly [string, GgufValue]>> {
  const file = join(dir, "tokenizer.json");
  if (!existsSync(file)) {
    throw new FileMissingError(file, `${file}: the base GGUF writer needs a tokenizer.json (byte-level BPE)${existsSync(join(dir, "tokenizer.model")) ? "; SentencePiece tokenizer.model alone is not supported — use llama.cpp's convert_hf_to_gguf.py" : ""}`);
  }
  let tj: TokenizerJson;
  try {
    tj = JSON.parse(await readFile(file, "utf8")) as TokenizerJson;
  } catch (err) {
    throw new FormatError(file, `not JSON (${(err as Error).message})`);
  }
  const model = tj.model;
  if (model?.type !== "BPE" || !model.vocab || !Array.isArray(model.merges)) {
    throw new UnsupportedFeatureError("tokenizer", `${file}: tokenizer model ${JSON.stringify(model?.type)} is not supported for GGUF (byte-level BPE only)`);
  }
  if (tj.pre_tokenizer?.type !== "ByteLevel" || tj.pre_tokenizer.use_regex === false || tj.normalizer) {
    throw new UnsupportedFeatureError("tokenizer", `${file}: only a ByteLevel pre-tokenizer with its GPT-2 regex and no normalizer maps onto llama.cpp's 'gpt-2' pre-tokenizer`);
  }
  const tokens: Array<string | undefined> = new Array(vocabSize).fill(undefined);
  const types: number[] = new Array(vocabSize).fill(UNUSED);
  const place = (content: string, id: number, type: number): void => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new FormatError(file, `token ${JSON.stringify(content)} has id ${id}, outside the model's vocab_size ${vocabSize}`);
    tokens[id] = content;
    types[id] = type;
  };
  for (const [content, id] of Object.entries(model.vocab)) place(content, id, NORMAL);
  for (const t of tj.added_tokens ?? []) place(t.content, t.id, t.special ? CONTROL : USER_DEFINED);
  const list = tokens.map((t, i) => t ?? `[PAD${i}]`);
  const merges = model.merges.map((m) => (typeof m === "string" ? m : m.join(" ")));

  const cfgFile = join(dir, "tokenizer_config.json");
  const tcfg = existsSync(cfgFile) ? (JSON.parse(await readFile(cfgFile, "utf8")) as Record<string, unknown>) : {};
  const idOf = (name: string | undefined): number | undefined => (name === undefined ? undefined : list.indexOf(name) >= 0 ? list.indexOf(name) : undefined);
  const bos = ids.bos ?? idOf(tokenName(tcfg.bos_token));
  const eos = ids.eos ?? idOf(tokenName(tcfg.eos_token));
  const out: Array<readonly [string, GgufValue]> = [
    ["tokenizer.ggml.model", gguf.str("gpt2")],
    ["tokenizer.ggml.pre", gguf.str("gpt-2")],
    ["tokenizer.ggml.tokens", gguf.strings(list)],
    ["tokenizer.ggml.token_type", gguf.i32s(types)],
    ["tokenizer.ggml.merges", gguf.strings(merges)],
  ];
  if (bos !== undefined) out.push(["tokenizer.ggml.bos_token_id", gguf.u32(bos)]);
  if (eos !== undefined) out.push(["tokenizer.ggml.eos_token_id", gguf.u32(eos)]);
  out.push(["tokenizer.ggml.add_bos_token", { type: GgufType.BOOL, value: tcfg.add_bos_token === true }]);
  return out;
}
