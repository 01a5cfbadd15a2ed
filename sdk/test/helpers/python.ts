/**
 * Runs the sidecar environment's Python for test fixtures and reference numbers. Reference outputs are
 * produced by the reference implementation in the same run, never hard-coded.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { limit } from "./timeouts.js";

export const REPO_ROOT = resolve(import.meta.dirname, "../../..");
export const PYTHON = join(REPO_ROOT, ".venv/bin/python");

/** Run Python code (`-c`) with args; returns stdout. Throws with stderr on failure. */
export function runPython(code: string, args: readonly string[] = [], options: { timeoutMs?: number } = {}): string {
  try {
    return execFileSync(PYTHON, ["-c", code, ...args], {
      encoding: "utf8",
      timeout: limit(options.timeoutMs ?? 300_000),
      maxBuffer: 256 * 1024 * 1024,
      env: { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error", HF_HUB_OFFLINE: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`python failed: ${e.stderr?.slice(-4000) ?? e.message}`);
  }
}

/** Run Python code that prints one JSON document on its last stdout line. */
export function runPythonJson<T = unknown>(code: string, args: readonly string[] = []): T {
  const out = runPython(code, args).trim().split("\n");
  return JSON.parse(out[out.length - 1]!) as T;
}

/** A fresh temp folder, removed by the returned cleanup. */
export function tempDir(prefix = "loraport-test-"): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
