/**
 * The Rust `tokenizers` binding (Hugging Face's npm package, napi-rs), loaded on first use: importing loraport
 * must not map a ~10 MB native library for callers that never tokenize.
 */
import type { Tokenizer as NativeTokenizer } from "tokenizers";

export type { NativeTokenizer };

let binding: Promise<typeof import("tokenizers")> | undefined;

export async function nativeTokenizerFromString(json: string): Promise<NativeTokenizer> {
  binding ??= import("tokenizers");
  const { Tokenizer } = await binding;
  return Tokenizer.fromString(json);
}
