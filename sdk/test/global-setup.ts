/**
 * vitest globalSetup, once per test run:
 * - a temp folder for the fixtures that several test files share (sdk/test/helpers/shared-fixture.ts): each is built
 *   once, by the first file that needs it, and removed with the folder when the run ends;
 * - the preloaded interpreter (sdk/test/helpers/python_preload.py): torch, transformers, PEFT and onnx imported once,
 *   a fork of it for every Python fixture the tests run (sdk/test/helpers/python.ts, pythonCommand). Not awaited:
 *   the first callers wait for it (python_preload_client.py), and a failed start falls back to plain interpreters.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { PRELOAD_ENV_VAR, PYTHON, PYTHON_ENV, REPO_ROOT } from "./helpers/python.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** The run's folder for shared fixtures. */
    sharedFixtureRoot: string;
  }
}

export default function setup(project: TestProject): () => Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "loraport-shared-fixtures-"));
  project.provide("sharedFixtureRoot", root);

  const socket = join(root, "python.sock");
  const log = openSync(join(root, "python-preload.log"), "w");
  const server = existsSync(PYTHON)
    ? spawn(PYTHON, [join(REPO_ROOT, "sdk/test/helpers/python_preload.py"), socket], { cwd: REPO_ROOT, env: { ...process.env, ...PYTHON_ENV }, stdio: ["ignore", "ignore", log] })
    : undefined;
  closeSync(log);
  const exited = new Promise<void>((resolve) => {
    if (!server) return resolve();
    server.once("error", () => resolve());
    server.once("exit", () => resolve());
  });
  // Callers waiting for the socket stop waiting and start plain interpreters.
  void exited.then(() => existsSync(root) && writeFileSync(`${socket}.failed`, ""));
  if (!server) writeFileSync(`${socket}.failed`, "");
  process.env[PRELOAD_ENV_VAR] = socket;

  return async () => {
    server?.kill("SIGTERM");
    await exited;
    rmSync(root, { recursive: true, force: true });
  };
}
