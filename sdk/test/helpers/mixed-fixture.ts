/** The mixed-adapter fixture shared by the mixed-batch and scheduler tests (reference: fixtures/mixed_reference.py). */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, runPython } from "./python.js";
import { sharedFixture } from "./shared-fixture.js";

export const MIXED_IDS = [
  [1, 5, 9, 17, 33, 2, 64, 100],
  [12, 0, 99, 45, 8, 76, 31, 22],
  [7, 3, 60, 2, 2, 9, 118, 4],
  [40, 41, 42, 43, 44, 45, 46, 47],
];
/** Each row's adapter (null = the base). */
export const MIXED_ROWS = ["a0", null, "a1", "a0"];
export const MIXED_NEW_TOKENS = 24;

export interface MixedReference {
  /** Folder with base/, onnx/ (adapter-inputs), a0/, a1/ (PEFT). */
  readonly dir: string;
  /** PEFT's mixed-batch forward logits for MIXED_IDS with MIXED_ROWS, flattened. */
  readonly mixedLogits: number[];
  /** transformers + PEFT greedy tokens per row, each with its adapter alone. */
  readonly greedy: number[][];
}

/**
 * The tiny Llama and GPT-2 fixtures and their references (computed in the same test run), built once per run for
 * both test files that use them (sdk/test/helpers/shared-fixture.ts); their folders are read-only.
 */
export async function buildMixedReference(): Promise<Record<"llama" | "gpt2", MixedReference>> {
  const spec = { ids: MIXED_IDS, rowAdapters: MIXED_ROWS, newTokens: MIXED_NEW_TOKENS };
  const build = (dir: string): Record<"llama" | "gpt2", MixedReference> => {
    const specFile = join(dir, "spec.json");
    writeFileSync(specFile, JSON.stringify(spec));
    const script = readFileSync(join(REPO_ROOT, "sdk/test/generation/fixtures/mixed_reference.py"), "utf8");
    const out = runPython(script, [specFile, dir], { timeoutMs: 900_000 }).trim().split("\n");
    return JSON.parse(out.at(-1)!) as Record<"llama" | "gpt2", MixedReference>;
  };
  return (await sharedFixture("mixed", spec, build)).value;
}
