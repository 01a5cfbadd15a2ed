/**
 * The train-step exporter's refusals reach the CLI as loraport errors that say what is wrong and what to do, with
 * no Python class path (the sidecar reports them as `loraport_sidecar.export.train_checks.ExportCheckError` etc.).
 */
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LoraportError, RemoteError } from "../../src/errors.js";
import { run as runCli } from "../../src/cli/main.js";
import { explainExportError } from "../../src/training/export-errors.js";
import { runPython, tempDir } from "../helpers/python.js";

const tmp = tempDir("loraport-export-errors-");
afterAll(() => tmp.cleanup());

describe("train-step export errors", () => {
  it("an export gate's refusal becomes E_EXPORT_CHECK with the gate's own message", () => {
    const remote = new RemoteError("loraport_sidecar.export.train_checks.ExportCheckError", "eval.onnx: input input_ids has fixed dims ['batch', 8], so …", []);
    const e = explainExportError(remote) as LoraportError;
    expect(e).toBeInstanceOf(LoraportError);
    expect(e.code).toBe("E_EXPORT_CHECK");
    expect(e.message).toBe("train-step export refused, nothing written: eval.onnx: input input_ids has fixed dims ['batch', 8], so …");
    const other = new Error("x");
    expect(explainExportError(other)).toBe(other);
  });

  it("loraport export --mode train-step with a target module the model lacks: one line, no Python class path", async () => {
    const base = join(tmp.dir, "tiny-gpt2");
    runPython("import sys\nfrom loraport_sidecar.reference import tiny_models\ntiny_models.save(tiny_models.gpt2(n_embd=32, n_layer=1, n_head=2, vocab_size=64), sys.argv[1])", [base]);
    const errs: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
    let code: number;
    try {
      code = await runCli(["export", "--mode", "train-step", "--base", base, "--out", join(tmp.dir, "art"), "--target-modules", "no_such_module"]);
    } finally {
      process.stderr.write = write;
    }
    expect(code).toBe(1);
    const line = errs.join("").trim().split("\n").filter((l) => l.startsWith("loraport:")).at(-1) ?? "";
    console.log(line);
    expect(line).toMatch(/^loraport: train-step export: .*no_such_module/);
    expect(line).not.toMatch(/loraport_sidecar\.|ValueError|Traceback/);
  });
});
