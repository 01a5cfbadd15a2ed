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
/** The environment test fixtures run Python in (also the preloaded interpreter's, sdk/test/global-setup.ts). */
export const PYTHON_ENV = { PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error", HF_HUB_OFFLINE: "1" } as const;
/** Set by sdk/test/global-setup.ts: the socket of the run's preloaded interpreter (python_preload.py). */
export const PRELOAD_ENV_VAR = "LORAPORT_TEST_PYTHON_PRELOAD";
const PRELOAD_CLIENT = join(REPO_ROOT, "sdk/test/helpers/python_preload_client.py");

/**
 * The command line that runs `python ...args` for a test: in a child of the run's preloaded interpreter when
 * there is one (torch, transformers and PEFT imported once per run instead of once per fixture: 5-8 s of CPU
 * each), else a plain interpreter. Same output, exit status, files and environment either way.
 */
export function pythonCommand(args: readonly string[]): [string, string[]] {
  const socket = process.env[PRELOAD_ENV_VAR];
  return socket ? [PYTHON, [PRELOAD_CLIENT, socket, ...args]] : [PYTHON, [...args]];
}

/** Run Python code (`-c`) with args; returns stdout. Throws with stderr on failure. */
export function runPython(code: string, args: readonly string[] = [], options: { timeoutMs?: number } = {}): string {
  try {
    const [file, argv] = pythonCommand(["-c", code, ...args]);
    return execFileSync(file, argv, {
      encoding: "utf8",
      timeout: limit(options.timeoutMs ?? 300_000),
      maxBuffer: 256 * 1024 * 1024,
      env: { ...process.env, ...PYTHON_ENV },
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
