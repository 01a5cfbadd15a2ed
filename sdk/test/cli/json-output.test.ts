/**
 * `--json` on merge, combine and convert: stdout is exactly one JSON object naming each file written with its size
 * (checked against the file system) and what went into it; nothing else reaches stdout.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSafetensors } from "../../src/formats/safetensors/index.js";
import { runPython, tempDir } from "../helpers/python.js";
import { requireReference } from "../helpers/reference.js";
import { cli, writeTinyAdapter, writeTinyBase } from "./cli-fixtures.js";
import { limit } from "../helpers/timeouts.js";

interface Written {
  files: Array<{ path: string; bytes: number }>;
  [key: string]: unknown;
}

async function jsonOf(argv: string[]): Promise<Written> {
  const r = await cli(argv);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout.trim().split("\n")).toHaveLength(1);
  const doc = JSON.parse(r.stdout) as Written;
  expect(doc.files.length).toBeGreaterThan(0);
  for (const f of doc.files) expect(statSync(f.path).size, f.path).toBe(f.bytes);
  return doc;
}

describe("--json on merge, combine, convert", () => {
  const tmp = tempDir("loraport-json-");
  const base = join(tmp.dir, "base.safetensors");
  const A = join(tmp.dir, "A");
  const B = join(tmp.dir, "B");
  const ckpt = join(tmp.dir, "tied.pt");
  beforeAll(async () => {
    await writeTinyBase(base);
    await writeTinyAdapter(A, 2);
    await writeTinyAdapter(B, 3);
    // Tied weights: the same tensor under two names, stored once by convert.
    runPython("import sys, torch; w = torch.arange(6.0).reshape(2, 3); torch.save({'emb': w, 'head': w, 'b': torch.ones(3)}, sys.argv[1])", [ckpt]);
  }, limit(300_000));
  afterAll(() => tmp.cleanup());

  it("merge --json", async () => {
    const out = join(tmp.dir, "merged.safetensors");
    const doc = await jsonOf(["merge", "--base", base, "--adapter", A, "--out", out, "--json"]);
    expect(doc).toMatchObject({ command: "merge", out, tensors: 1, modules: 1, files: [{ path: out }] });
    expect((doc["merged"] as Array<{ module: string }>)[0]!.module).toBe("layer.proj");
  });

  it("combine --json", async () => {
    const out = join(tmp.dir, "AB");
    const doc = await jsonOf(["combine", A, B, "--weights", "1,0.5", "--out", out, "--json"]);
    expect(doc).toMatchObject({ command: "combine", out, adapters: [A, B], weights: [1, 0.5], modules: 1, ranks: [4] });
    expect(doc.files.map((f) => f.path).sort()).toEqual([join(out, "adapter_config.json"), join(out, "adapter_model.safetensors")]);
  });

  it("convert --json", async () => {
    const out = join(tmp.dir, "tied.safetensors");
    const doc = await jsonOf(["convert", ckpt, "--out", out, "--json"]);
    const written = (await readSafetensors(out)).tensors;
    expect(doc).toMatchObject({ command: "convert", to: "safetensors", input: ckpt, out, tensors: written.size, aliases: { head: "emb" } });
  });

  const published = requireReference("gpt2_md_lora_e2e.pt");
  it.skipIf(!published)("convert --to peft --json (the published GPT-2 E2E checkpoint)", async () => {
    const out = join(tmp.dir, "e2e-peft");
    const doc = await jsonOf(["convert", published!, "--to", "peft", "--out", out, "--json"]);
    expect(doc).toMatchObject({ command: "convert", to: "peft", input: published, out, modules: 24 });
    expect(doc.files.map((f) => f.path).sort()).toEqual([join(out, "adapter_config.json"), join(out, "adapter_model.safetensors")]);
    expect((doc["report"] as string[]).join("\n")).toContain("preset: gpt2-medium-nlg");
  });
});
