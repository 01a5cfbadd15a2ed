/** The public shapes of sdk/src/tokenizer/: what `loadTokenizer` returns and what its methods take. */
import type { StreamDecoder } from "./stream-decoder.js";

/** One chat message, as transformers takes it: `role` and `content`, plus whatever a template reads (`tool_calls`, ...). */
export interface ChatMessage {
  role: string;
  content?: unknown;
  [key: string]: unknown;
}

export interface EncodeOptions {
  /** Add the post-processor's special tokens (e.g. BOS, [CLS]/[SEP]); default true, as transformers' `tokenizer(text)`. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special added tokens; default false, as transformers' `decode`. */
  skipSpecialTokens?: boolean;
  /**
   * transformers' `clean_up_tokenization_spaces` (" ." → "." and the like). Default: the tokenizer_config.json
   * value, ignored for BPE models as transformers 5 does; false gives exactly the `tokenizers` library's decode.
   */
  cleanUpTokenizationSpaces?: boolean;
}

export interface ChatTemplateOptions {
  /** Append the template's assistant header (transformers' `add_generation_prompt`); default false. */
  addGenerationPrompt?: boolean;
  /** JSON-schema tool definitions passed to the template as `tools` (else `tools` is none). */
  tools?: readonly Record<string, unknown>[];
  /** RAG documents passed as `documents` (else none). */
  documents?: readonly Record<string, unknown>[];
  /** A template name (from a set of named templates) or a Jinja template source; default: the tokenizer's own. */
  template?: string;
  /** Extra template variables (transformers' `**kwargs`, e.g. `date_string`); they override the special tokens. */
  variables?: Record<string, unknown>;
}

export interface StreamDecoderOptions {
  /** As `decode`'s option; default false. */
  skipSpecialTokens?: boolean;
}

/** A Hugging Face tokenizer folder (tokenizer.json and its companions), loaded by `loadTokenizer`. */
export interface Tokenizer {
  /** The folder it was loaded from. */
  readonly dir: string;
  /** Vocabulary size including added tokens (transformers' `len(tokenizer)`). */
  readonly vocabSize: number;
  /** Named special tokens as transformers' `special_tokens_map` (bos_token, eos_token, pad_token, ...). */
  readonly specialTokens: Readonly<Record<string, string>>;
  readonly bosTokenId: number | null;
  /**
   * Ids that end a sequence: the tokenizer's eos_token first, then any `eos_token_id` of a generation_config.json
   * in the same folder (Llama 3 lists several); empty when neither names one.
   */
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  /** The default chat template's source, or null when the folder has none. */
  readonly chatTemplate: string | null;
  /** Names of the named chat templates (e.g. `default`, `tool_use`); empty for a single template. */
  readonly chatTemplateNames: readonly string[];

  /** Token ids of `text`, equal to Python `tokenizers`' `Tokenizer.encode(text).ids` (async: the Rust binding's encode is). */
  encode(text: string, options?: EncodeOptions): Promise<number[]>;
  /** `encode` of many texts in one native call (parallel inside the library), as `Tokenizer.encode_batch`. */
  encodeBatch(texts: readonly string[], options?: EncodeOptions): Promise<number[][]>;
  /** Text of `ids`; ids outside the vocabulary are dropped, as the `tokenizers` library does. */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  idToToken(id: number): string | null;
  tokenToId(token: string): number | null;
  /** True for ids of added tokens marked special (what `skipSpecialTokens` leaves out). */
  isSpecialId(id: number): boolean;
  /** The prompt string of `apply_chat_template(messages, tokenize=False, ...)`. */
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string;
  /** Ids of the rendered chat, encoded without adding special tokens again (as `apply_chat_template(tokenize=True)`). */
  encodeChat(messages: readonly ChatMessage[], options?: ChatTemplateOptions): Promise<number[]>;
  /** A decoder for one sequence's ids arriving one at a time (generation). */
  streamDecoder(options?: StreamDecoderOptions): StreamDecoder;
}
