/**
 * The tiny GPT-2 of sdk/test/generation/fixtures/cli_reference.py (tokenizer, PEFT adapter, three exports, transformers
 * + PEFT greedy references), shared by the `generate` CLI test and the HTTP server test: built once per run.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, runPythonJson } from "./python.js";
import { sharedFixture } from "./shared-fixture.js";

/** cli_reference.py's JSON document (`dir` is the shared, read-only folder it built). */
export async function generateCliFixture<T>(): Promise<T> {
  const script = join(REPO_ROOT, "sdk/test/generation/fixtures/cli_reference.py");
  return (await sharedFixture("generate-cli", script, (dir) => runPythonJson<T>(readFileSync(script, "utf8"), [dir]))).value;
}
