/** Case files: the shipped ones are valid; a bad one is a FormatError naming the file and the field. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readCaseFile, readCaseFolder } from "../../src/conformance/case.js";
import { DEFAULT_CASES_DIR } from "../../src/conformance/runner.js";
import { FileMissingError, FormatError } from "../../src/errors.js";
import { tempDir } from "../helpers/python.js";

const tmp = tempDir("loraport-cases-");
afterAll(() => tmp.cleanup());

describe("conformance case files", () => {
  it("ships both published checkpoints and a generated case for every layer type and option", () => {
    const cases = readCaseFolder(DEFAULT_CASES_DIR);
    const ids = cases.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const want of ["published/gpt2-medium-e2e", "published/roberta-base-mnli", "linear", "conv1d", "embedding", "conv2d", "merged-linear", "rslora", "patterns", "dora", "f16", "bf16"]) {
      expect(ids.some((id) => id.includes(want)), want).toBe(true);
    }
    for (const c of cases) {
      expect(c.tolerances.weights.abs, c.id).toBeGreaterThan(0);
      if (c.dtype === "F32") expect([c.tolerances.weights.abs, c.tolerances.logits.abs], c.id).toEqual([1e-5, 1e-4]);
    }
  });

  it("names the file and the field of a bad case", () => {
    const good = JSON.parse(JSON.stringify(readCaseFile(join(DEFAULT_CASES_DIR, "linear-llama.json")))) as Record<string, unknown>;
    const bad = (mutate: (o: Record<string, unknown>) => void): string => {
      const o = structuredClone(good);
      mutate(o);
      const file = join(tmp.dir, "bad.json");
      writeFileSync(file, JSON.stringify(o));
      return file;
    };
    const cases: Array<[string, (o: Record<string, unknown>) => void]> = [
      ["tolerances.weights.abs", (o) => ((o["tolerances"] as { weights: { abs: unknown } }).weights.abs = "tiny")],
      ["pairs[0].kind", (o) => ((o["pairs"] as Array<{ kind: string }>)[0]!.kind = "bias")],
      ["adapter.source", (o) => ((o["adapter"] as { source: string }).source = "lycoris")],
      ["id", (o) => delete o["id"]],
    ];
    for (const [field, mutate] of cases) {
      const file = bad(mutate);
      expect(() => readCaseFile(file)).toThrow(FormatError);
      expect(() => readCaseFile(file)).toThrow(new RegExp(`${file}.*${field.replace(/[[\].]/g, "\\$&")}`));
    }
    const notJson = join(tmp.dir, "x.json");
    writeFileSync(notJson, "{");
    expect(() => readCaseFile(notJson)).toThrow(/not JSON/);
    expect(() => readCaseFile(join(tmp.dir, "missing.json"))).toThrow(FileMissingError);
  });
});
