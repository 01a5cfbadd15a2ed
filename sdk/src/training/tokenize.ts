/**
 * Text examples → token ids with the tokenizer the exporter copied from the base model folder
 * (`<artifact>/tokenizer/tokenizer.json`), run by the sidecar environment's `tokenizers` package.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { defaultPython, packageRoot } from "../bridge/internal/process.js";
import { FormatError, RuntimeError } from "../errors.js";
import type { TrainManifest } from "./manifest.js";

const SCRIPT = `
import json, sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
texts = json.load(sys.stdin)
print(json.dumps([e.ids for e in tok.encode_batch(texts)]))
`;

/** Token ids of each text; `file` names the data file in errors when the artifact has no tokenizer. */
export async function tokenizeTexts(artifactDir: string, manifest: TrainManifest, texts: readonly { text: string; line: number }[], file: string): Promise<number[][]> {
  const tokenizer = manifest.tokenizer ? join(artifactDir, manifest.tokenizer, "tokenizer.json") : undefined;
  if (!tokenizer || !existsSync(tokenizer)) {
    const first = texts[0]!;
    throw new FormatError(file, `line ${first.line}: has "text" but the artifact ${artifactDir} has no tokenizer (its base model folder had no tokenizer.json); give "input_ids" instead`);
  }
  const root = packageRoot();
  const res = await execa(defaultPython(root), ["-c", SCRIPT, tokenizer], { input: JSON.stringify(texts.map((t) => t.text)), reject: false, env: { PYTHONWARNINGS: "ignore" } });
  if (res.exitCode !== 0) throw new RuntimeError(`tokenizing ${file} with ${tokenizer} failed: ${String(res.stderr).split("\n").filter(Boolean).at(-1) ?? "unknown error"}`);
  return JSON.parse(String(res.stdout)) as number[][];
}
