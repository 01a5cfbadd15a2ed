/**
 * Where the checkpoints published with the LoRA paper live on this machine, and what to tell a user who
 * does not have them. Tests and the conformance suite read them from there; they are never copied into the repo.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { FileMissingError } from "./errors.js";
import { packageRoot } from "./internal/package-root.js";

export const REFERENCE_FILES = {
  gpt2MediumE2E: "gpt2_md_lora_e2e.pt",
  robertaBaseMNLI: "roberta_base_lora_mnli.bin",
  tinyGpt2: "tiny_gpt2_vocab50257.safetensors",
} as const;

export const REFERENCE_SOURCES: Readonly<Record<string, string>> = {
  "gpt2_md_lora_e2e.pt": "https://github.com/microsoft/LoRA/releases/tag/GPT-2 (asset gpt2_md_lora_e2e.pt)",
  "roberta_base_lora_mnli.bin": "https://github.com/microsoft/LoRA/releases/tag/RoBERTa-base (file roberta_base_lora_mnli.bin; also examples/NLU in the repo)",
  "tiny_gpt2_vocab50257.safetensors": "a tiny GPT2LMHeadModel saved by Hugging Face transformers (any 1-layer GPT-2 with the 50257-token vocabulary will do)",
};

/** The reference folder: `$LORAPORT_REFERENCE_DIR`, else `../shared/reference` beside the repository. */
export function referenceDir(explicit?: string): string {
  if (explicit) return resolve(explicit);
  const env = process.env["LORAPORT_REFERENCE_DIR"];
  if (env) return resolve(env);
  return resolve(packageRoot(), "../shared/reference");
}

/** Path of one reference file, or a `FileMissingError` saying where to get it. */
export function referenceFile(name: string, dir?: string): string {
  const path = join(referenceDir(dir), name);
  if (!existsSync(path)) {
    throw new FileMissingError(path, `${path}: reference checkpoint not found. Download it from ${REFERENCE_SOURCES[name] ?? "microsoft/LoRA"} and put it there, or point LORAPORT_REFERENCE_DIR at its folder.`);
  }
  return path;
}
