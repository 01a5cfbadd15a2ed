/** Tokenizers and chat templates from a Hugging Face tokenizer folder, in TypeScript (no Python). */
export { loadTokenizer } from "./load.js";
export { StreamDecoder } from "./stream-decoder.js";
export { TokenizerError } from "./errors.js";
export type { ChatMessage, ChatTemplateOptions, DecodeOptions, EncodeOptions, StreamDecoderOptions, Tokenizer } from "./types.js";
