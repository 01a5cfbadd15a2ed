/** Shared fixtures for the training tests: a tiny artifact exported by the real sidecar exporter, seeded data. */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { pythonCommand, REPO_ROOT } from "../helpers/python.js";
import type { TrainExample } from "../../src/training/index.js";

/** Export a train-step artifact with the sidecar module (real make_fx + torch.onnx + export gates). */
export function exportArtifact(out: string, args: readonly string[]): string {
  try {
    return execFileSync(...pythonCommand(["-m", "loraport_sidecar.export.train_step", "--out", out, ...args]), {
      cwd: REPO_ROOT,
      encoding: "utf8",
      timeout: 600_000,
      env: { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error", HF_HUB_OFFLINE: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`export failed: ${e.stderr?.slice(-3000) ?? e.message}`);
  }
}

export const TORCH_REFERENCE = join(REPO_ROOT, "sdk/test/training/torch_reference.py");

/** Seeded causal-LM examples of varying length, some with prompt-masked labels. */
export function seededExamples(n: number, vocab: number, seed: number, minLen = 4, maxLen = 12): TrainExample[] {
  let s = seed >>> 0;
  const rand = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  return Array.from({ length: n }, (_, i) => {
    const len = minLen + Math.floor(rand() * (maxLen - minLen + 1));
    const ids = Array.from({ length: len }, () => Math.floor(rand() * vocab));
    if (i % 3 === 0) {
      const prompt = 1 + Math.floor(rand() * (len - 2));
      return { input_ids: ids, labels: ids.map((x, j) => (j < prompt ? -100 : x)) };
    }
    return { input_ids: ids };
  });
}

/** Max abs error and max relative error (|Δ|max / |want|max) of two arrays. */
export function errors(got: ArrayLike<number>, want: ArrayLike<number>): { maxAbs: number; maxRel: number } {
  let maxAbs = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return { maxAbs, maxRel: scale > 0 ? maxAbs / scale : maxAbs };
}
