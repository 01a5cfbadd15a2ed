/**
 * `loadTokenizer(dir)`: a Hugging Face tokenizer folder run by the Rust `tokenizers` library (the npm binding of
 * the crate Python's `tokenizers` and transformers use, so ids are Python's by construction; see README.md for
 * the measurements behind that choice), plus the transformers conventions around it: named special tokens,
 * chat templates, decode clean-up.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Template } from "@huggingface/jinja";
import { FileMissingError, FormatError } from "../errors.js";
import { renderChatTemplate, type ChatTemplateSource } from "./chat-template.js";
import { readTokenizerFolder } from "./config.js";
import { cleanUpTokenization, decoderTraits, tokensToText, type TokensToText } from "./decode.js";
import { TokenizerError } from "./errors.js";
import { nativeTokenizerFromString, type NativeTokenizer } from "./native.js";
import { StreamDecoder } from "./stream-decoder.js";
import type { ChatMessage, ChatTemplateOptions, DecodeOptions, EncodeOptions, StreamDecoderOptions, Tokenizer } from "./types.js";

/** Loads `<dir>/tokenizer.json` and, when present, tokenizer_config.json, special_tokens_map.json, chat templates and generation_config.json. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const file = join(dir, "tokenizer.json");
  if (!existsSync(file)) {
    throw new FileMissingError(file, `${file}: no such file: the folder ${dir} has no tokenizer (copy tokenizer.json, and tokenizer_config.json if there is one, from the base model folder)`);
  }
  const folder = readTokenizerFolder(dir);
  let native: NativeTokenizer;
  try {
    native = await nativeTokenizerFromString(folder.text);
  } catch (err) {
    throw new FormatError(file, `not a tokenizer the tokenizers library can load: ${(err as Error).message}`, { cause: err });
  }
  return new HfTokenizer(dir, folder, native);
}

class HfTokenizer implements Tokenizer {
  readonly dir: string;
  readonly vocabSize: number;
  readonly specialTokens: Readonly<Record<string, string>>;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  readonly chatTemplate: string | null;
  readonly chatTemplateNames: readonly string[];

  readonly #native: NativeTokenizer;
  readonly #text: TokensToText;
  /** Content of the added tokens marked special: what `skip_special_tokens` drops (Rust checks by content). */
  readonly #special: ReadonlySet<string>;
  readonly #cleanUp: boolean;
  readonly #traits: ReturnType<typeof decoderTraits>;
  readonly #chat: ChatTemplateSource;
  readonly #compiled = new Map<string, Template>();
  /** id → token, filled as ids are seen (one native call per distinct id instead of one per occurrence). */
  readonly #tokens: (string | null | undefined)[] = [];

  constructor(dir: string, folder: ReturnType<typeof readTokenizerFolder>, native: NativeTokenizer) {
    this.dir = dir;
    this.#native = native;
    this.#text = tokensToText(native.getDecoder());
    this.#special = new Set((folder.json.added_tokens ?? []).filter((t) => t.special).map((t) => t.content));
    // transformers 5 skips clean-up for BPE models ("destructive for BPE"), whatever the config says.
    this.#cleanUp = folder.cleanUpTokenizationSpaces && folder.json.model?.type !== "BPE";
    this.#traits = decoderTraits(folder.json, this.#cleanUp);
    this.vocabSize = native.getVocabSize(true);
    this.specialTokens = Object.freeze({ ...folder.specialTokens });
    // transformers' `<name>_token_id`: the token's id, or the unk id when the token is not in the vocabulary.
    const unk = folder.specialTokens["unk_token"];
    this.unkTokenId = unk === undefined ? null : native.tokenToId(unk) ?? null;
    const idOf = (name: string): number | null => {
      const token = folder.specialTokens[name];
      return token === undefined ? null : native.tokenToId(token) ?? this.unkTokenId;
    };
    this.bosTokenId = idOf("bos_token");
    this.padTokenId = idOf("pad_token");
    const eos = idOf("eos_token");
    this.eosTokenIds = Object.freeze([...new Set([...(eos === null ? [] : [eos]), ...folder.generationEosIds])]);
    const templates = folder.chatTemplates;
    this.chatTemplate = templates === null ? null : typeof templates === "string" ? templates : templates["default"] ?? null;
    this.chatTemplateNames = templates !== null && typeof templates === "object" ? Object.keys(templates) : [];
    this.#chat = { dir, templates, specialTokens: this.specialTokens };
  }

  async encode(text: string, options: EncodeOptions = {}): Promise<number[]> {
    if (typeof text !== "string") throw new TokenizerError(`encode: expected a string, got ${typeof text}`);
    const encoding = await this.#native.encode(text, null, { addSpecialTokens: options.addSpecialTokens ?? true });
    return encoding.getIds();
  }

  async encodeBatch(texts: readonly string[], options: EncodeOptions = {}): Promise<number[][]> {
    const bad = texts.findIndex((t) => typeof t !== "string");
    if (bad >= 0) throw new TokenizerError(`encodeBatch: texts[${bad}] is ${typeof texts[bad]}, expected a string`);
    if (texts.length === 0) return [];
    const encodings = await this.#native.encodeBatch([...texts], { addSpecialTokens: options.addSpecialTokens ?? true });
    return encodings.map((e) => e.getIds());
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    const tokens: string[] = [];
    for (const id of ids) {
      const token = this.#keptToken(id, skip);
      if (token !== null) tokens.push(token);
    }
    const text = this.#text(tokens);
    return options.cleanUpTokenizationSpaces ?? this.#cleanUp ? cleanUpTokenization(text) : text;
  }

  idToToken(id: number): string | null {
    checkId(id);
    let token = this.#tokens[id];
    if (token === undefined) {
      // Ids past the u32 range cannot reach the binding; they are unknown like any id outside the vocabulary.
      token = id > 0xffffffff ? null : this.#native.idToToken(id);
      if (id < this.vocabSize) this.#tokens[id] = token;
    }
    return token;
  }

  tokenToId(token: string): number | null {
    return this.#native.tokenToId(token) ?? null;
  }

  isSpecialId(id: number): boolean {
    const token = this.idToToken(id);
    return token !== null && this.#special.has(token);
  }

  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    return renderChatTemplate(this.#chat, this.#compiled, messages, options);
  }

  async encodeChat(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): Promise<number[]> {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }

  streamDecoder(options: StreamDecoderOptions = {}): StreamDecoder {
    const skip = options.skipSpecialTokens ?? false;
    const cleanUp = this.#cleanUp;
    return new StreamDecoder({
      tokenOf: (id) => this.#keptToken(id, skip),
      textOf: (tokens) => (cleanUp ? cleanUpTokenization(this.#text(tokens)) : this.#text(tokens)),
      traits: this.#traits,
    });
  }

  /** The token Rust's decode keeps for `id`: null for an unknown id, or a special one when skipping them. */
  #keptToken(id: number, skipSpecial: boolean): string | null {
    const token = this.idToToken(id);
    return token === null || (skipSpecial && this.#special.has(token)) ? null : token;
  }
}

function checkId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 0) throw new TokenizerError(`token id ${String(id)} is not a non-negative integer`);
}
