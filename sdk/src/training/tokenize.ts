/**
 * Text examples → token ids with the tokenizer the exporter copied from the base model folder
 * (`<artifact>/tokenizer/tokenizer.json`), run in-process by loraport's tokenizer (the Rust `tokenizers` library,
 * the same code as the Python package: `encode_batch` with its defaults, special tokens added).
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { FormatError, RuntimeError } from "../errors.js";
import { loadTokenizer } from "../tokenizer/index.js";
import type { TrainManifest } from "./manifest.js";

/** Token ids of each text; `file` names the data file in errors when the artifact has no tokenizer. */
export async function tokenizeTexts(artifactDir: string, manifest: TrainManifest, texts: readonly { text: string; line: number }[], file: string): Promise<number[][]> {
  const tokenizer = manifest.tokenizer ? join(artifactDir, manifest.tokenizer, "tokenizer.json") : undefined;
  if (!tokenizer || !existsSync(tokenizer)) {
    const first = texts[0]!;
    throw new FormatError(file, `line ${first.line}: has "text" but the artifact ${artifactDir} has no tokenizer (its base model folder had no tokenizer.json); give "input_ids" instead`);
  }
  return tokenizeWith(tokenizer, texts, file);
}

/** Token ids of each text with the tokenizer.json at `tokenizer` (a base model folder's, for the torch engine). */
export async function tokenizeWith(tokenizer: string, texts: readonly { text: string; line: number }[], file: string): Promise<number[][]> {
  try {
    const tok = await loadTokenizer(dirname(tokenizer));
    return await tok.encodeBatch(texts.map((t) => t.text));
  } catch (err) {
    throw new RuntimeError(`tokenizing ${file} with ${tokenizer} failed: ${(err as Error).message}`, { cause: err });
  }
}
