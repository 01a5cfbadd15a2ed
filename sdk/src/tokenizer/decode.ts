/**
 * Synchronous decoding with the native library's own decoder: ids → tokens (added vocabulary first, then the
 * model's, unknown ids dropped, special ones dropped on request) → `Decoder.decode(tokens)`. This is exactly what
 * Rust's `Tokenizer::decode` does, minus the async hop its binding adds; streaming decodes once per token, so
 * it matters. The decode tests hold it to Python's `Tokenizer.decode`.
 */
import type { Decoder } from "tokenizers";
import type { TokenizerJson } from "./config.js";

/** transformers' `clean_up_tokenization` (tokenization_utils_base.py), applied after the decoder. */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(" .", ".")
    .replaceAll(" ?", "?")
    .replaceAll(" !", "!")
    .replaceAll(" ,", ",")
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

export interface TokensToText {
  /** The decoder's text of `tokens` (tokens joined by spaces when tokenizer.json has no decoder). */
  (tokens: string[]): string;
}

export function tokensToText(decoder: Decoder | null): TokensToText {
  return decoder ? (tokens) => decoder.decode(tokens) : (tokens) => tokens.join(" ");
}

/** What streaming must know about the decoder chain. */
export interface DecoderTraits {
  /** A ByteFallback step: a run of `<0xNN>` tokens turns into text (or all U+FFFD) only as a whole. */
  byteFallback: boolean;
  /** A step that rewrites text across token boundaries (WordPiece/CTC clean-up). */
  rewritesAcrossTokens: boolean;
}

export function decoderTraits(json: TokenizerJson, cleanUp: boolean): DecoderTraits {
  const traits: DecoderTraits = { byteFallback: false, rewritesAcrossTokens: cleanUp };
  const visit = (d: unknown): void => {
    if (typeof d !== "object" || d === null) return;
    const node = d as { type?: unknown; decoders?: unknown; cleanup?: unknown };
    if (node.type === "ByteFallback") traits.byteFallback = true;
    if ((node.type === "WordPiece" || node.type === "CTC") && node.cleanup !== false) traits.rewritesAcrossTokens = true;
    if (Array.isArray(node.decoders)) node.decoders.forEach(visit);
  };
  visit(json.decoder);
  return traits;
}

/** `<0xNN>`: the ByteFallback decoder's byte tokens (six characters; Rust's `u8::from_str_radix` also takes "+N"). */
export function isByteToken(token: string): boolean {
  return token.length === 6 && token.startsWith("<0x") && token.endsWith(">") && /^(?:[0-9A-Fa-f]{2}|\+[0-9A-Fa-f])$/.test(token.slice(3, 5));
}
