/**
 * Streaming detokenization: token ids go in one at a time, text pieces come out, and
 *   - no piece ever holds broken UTF-8: text is held back while the decoded tail ends in U+FFFD (an incomplete
 *     byte sequence), as transformers' TextStreamer and the `tokenizers` DecodeStream do;
 *   - the pieces plus `flush()` concatenate to exactly `decode(allIds)`.
 *
 * Each step decodes a short window (the previous step's tokens as context, then the new ones) and emits what
 * the window's text adds to the context's text, as Rust's DecodeStream does, so a step costs the same at token 10
 * and token 10,000. Two decoder kinds need more than that for exactness:
 *   - ByteFallback turns a run of `<0xNN>` tokens into text only as a whole run (all U+FFFD if any byte is bad),
 *     so a run is held until a token that is not a byte ends it;
 *   - clean-up (WordPiece, CTC, transformers' clean_up_tokenization_spaces) rewrites text across tokens
 *     (" ' " → "'"), so for those the whole sequence is decoded and text is held after its last space.
 * Anything the window gets wrong is caught against the full decode, which `flush()` always checks.
 */
import type { DecoderTraits } from "./decode.js";
import { isByteToken } from "./decode.js";

/** What a StreamDecoder needs from its tokenizer. */
export interface StreamSource {
  /** The token `decode` would keep for `id` (null: unknown id, or a special token being skipped). */
  tokenOf(id: number): string | null;
  /** `decode`'s text of these (kept) tokens. */
  textOf(tokens: string[]): string;
  traits: DecoderTraits;
}

const REPLACEMENT = "\ufffd";

/** One sequence's incremental decoder; make one per sequence with `tokenizer.streamDecoder()`. */
export class StreamDecoder {
  readonly #source: StreamSource;
  readonly #tokens: string[] = [];
  #emitted = "";
  /** Window mode: the window starts at #start; the previous emission ended at #read, its text is #prefix. */
  #start = 0;
  #read = 0;
  #prefix = "";

  constructor(source: StreamSource) {
    this.#source = source;
  }

  /** All text emitted so far. */
  get text(): string {
    return this.#emitted;
  }

  /** Feed one id; returns the text it completes (often "" while a character or word is still open). */
  push(id: number): string {
    const token = this.#source.tokenOf(id);
    if (token === null) return "";
    this.#tokens.push(token);
    // A byte run is decoded as a whole: its text is not final until a non-byte token ends it.
    if (this.#source.traits.byteFallback && isByteToken(token)) return "";
    return this.#source.traits.rewritesAcrossTokens ? this.#stepWords() : this.#stepWindow();
  }

  /** The rest of the text, once the sequence has ended (may contain U+FFFD if the ids end mid-character). */
  flush(): string {
    const full = this.#source.textOf(this.#tokens);
    // Pieces already out are a prefix of the full decode by construction; if a decoder ever broke that, the
    // remainder is all that can still be given.
    const rest = full.startsWith(this.#emitted) ? full.slice(this.#emitted.length) : "";
    this.#emitted += rest;
    this.#start = this.#read = this.#tokens.length;
    this.#prefix = "";
    return rest;
  }

  #emit(piece: string): string {
    this.#emitted += piece;
    return piece;
  }

  #stepWindow(): string {
    const text = this.#source.textOf(this.#tokens.slice(this.#start));
    if (text.length <= this.#prefix.length || text.endsWith(REPLACEMENT)) return "";
    if (!text.startsWith(this.#prefix)) return this.#stepFull();
    const piece = text.slice(this.#prefix.length);
    this.#start = this.#read;
    this.#read = this.#tokens.length;
    this.#prefix = this.#source.textOf(this.#tokens.slice(this.#start, this.#read));
    return this.#emit(piece);
  }

  /** The window's context did not decode as a prefix: compare with the full decode instead. */
  #stepFull(): string {
    const full = this.#source.textOf(this.#tokens);
    if (full.endsWith(REPLACEMENT) || !full.startsWith(this.#emitted) || full.length === this.#emitted.length) return "";
    this.#start = this.#read;
    this.#read = this.#tokens.length;
    this.#prefix = this.#source.textOf(this.#tokens.slice(this.#start, this.#read));
    return this.#emit(full.slice(this.#emitted.length));
  }

  #stepWords(): string {
    const full = this.#source.textOf(this.#tokens);
    if (full.endsWith(REPLACEMENT) || !full.startsWith(this.#emitted)) return "";
    // Clean-up rules start at a space and only ever change text from there on.
    const cut = full.lastIndexOf(" ");
    return cut > this.#emitted.length ? this.#emit(full.slice(this.#emitted.length, cut)) : "";
  }
}
