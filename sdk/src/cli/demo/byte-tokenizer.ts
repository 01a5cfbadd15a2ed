/**
 * A byte-level tokenizer (GPT-2's byte-to-unicode alphabet, no merges) as a Hugging Face tokenizer folder: the
 * demo's tiny GPT-2 has no tokenizer of its own, and this one needs no training and no download. 256 byte tokens,
 * then `<|endoftext|>` (the tiny GPT-2's EOS, id 256).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** GPT-2's reversible byte → printable-character table (`bytes_to_unicode`). */
function byteAlphabet(): string[] {
  const keep = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + extra++));
}

export const BYTE_TOKENIZER_EOS = "<|endoftext|>";

/** Write tokenizer.json and tokenizer_config.json (with a small chat template) into `dir`. */
export function writeByteTokenizer(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const vocab = Object.fromEntries(byteAlphabet().map((ch, id) => [ch, id]));
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [{ id: 256, content: BYTE_TOKENIZER_EOS, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null, pre_tokenizer: byteLevel, post_processor: null, decoder: byteLevel,
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({
    tokenizer_class: "PreTrainedTokenizerFast", bos_token: BYTE_TOKENIZER_EOS, eos_token: BYTE_TOKENIZER_EOS,
    chat_template: "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
  }));
}
