/**
 * `loraport merge --base <model folder> --out merged/` (the README's example) writes a complete Hugging Face folder:
 * weights (sharded with an index when the base is), config.json, generation_config.json, tokenizer files and the
 * other non-weight files — and transformers loads it as it is, with logits equal to PEFT merge_and_unload's
 * (computed in the same run). An existing --out is refused unless --force; the folder appears whole or not at all.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSafetensors } from "../../src/formats/safetensors/index.js";
import { cli } from "../cli/cli-fixtures.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/model_folder_merge.py"), "utf8");
// The weight tolerance of merge-model.test.ts; the tiny model's logits move by ~0.4 with the adapter.
const TOL = 1e-6;

describe("merge into a model folder gives a complete model folder", () => {
  const tmp = tempDir("loraport-merge-folder-");
  const at = (p: string): string => join(tmp.dir, p);
  beforeAll(() => {
    const made = runPythonJson<{ adapter_moves_logits: number }>(SCRIPT, ["make", tmp.dir]);
    expect(made.adapter_moves_logits).toBeGreaterThan(1e-2);
  }, limit(300_000));
  afterAll(() => tmp.cleanup());

  it("one-file and sharded bases: every file of the base comes along, transformers loads the folders, logits equal PEFT's", async () => {
    const one = await cli(["merge", "--base", at("base"), "--adapter", at("adapter"), "--out", `${at("merged")}/`]);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toMatch(/merged 10 modules into \d+ tensors .*model folder: 1 weights file, 5 other files copied/);
    const sharded = await cli(["merge", "--base", at("base_sharded"), "--adapter", at("adapter"), "--out", at("merged_sharded"), "--json"]);
    expect(sharded.code, sharded.stderr).toBe(0);
    const doc = JSON.parse(sharded.stdout) as { files: Array<{ path: string }>; copied: string[] };
    expect(doc.copied.sort()).toEqual(["README.md", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]);
    for (const [base, out] of [["base", "merged"], ["base_sharded", "merged_sharded"]] as const) {
      expect(readdirSync(at(out)).sort()).toEqual(readdirSync(at(base)).sort());
      expect(readFileSync(at(`${out}/tokenizer.json`), "utf8")).toBe(readFileSync(at(`${base}/tokenizer.json`), "utf8"));
    }
    expect(readdirSync(tmp.dir).filter((n) => n.endsWith(".tmp"))).toEqual([]);
    const got = runPythonJson<Record<string, { same_ids: boolean; max_abs: number; max_new_tokens: number }>>(SCRIPT, ["check", tmp.dir, at("merged"), at("merged_sharded")]);
    for (const [folder, r] of Object.entries(got)) {
      console.log(`${folder}: transformers logits vs PEFT merge_and_unload, max abs ${r.max_abs.toExponential(2)}`);
      expect(r.same_ids, folder).toBe(true);
      expect(r.max_new_tokens, folder).toBe(7); // generation_config.json came along
      expect(r.max_abs, folder).toBeLessThanOrEqual(TOL);
    }
  }, limit(300_000));

  it("an existing non-empty --out is refused before any work; --force replaces it whole", async () => {
    const out = at("taken");
    mkdirSync(out);
    writeFileSync(join(out, "keep.txt"), "mine");
    const refused = await cli(["merge", "--base", at("base"), "--adapter", at("adapter"), "--out", out]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^loraport: --out .*taken already exists and is not empty; pass --force/);
    expect(readdirSync(out)).toEqual(["keep.txt"]);
    const forced = await cli(["merge", "--base", at("base"), "--adapter", at("adapter"), "--out", out, "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(readdirSync(at("base")).sort());
    expect(readdirSync(tmp.dir).filter((n) => n.startsWith(".taken"))).toEqual([]);
  });

  it("other weight formats in the base folder are left out (and reported); settings pickles and subfolders come along", async () => {
    const base = at("base_more");
    cpSync(at("base"), base, { recursive: true });
    writeFileSync(join(base, "pytorch_model.bin"), "stale unmerged weights");
    writeFileSync(join(base, "training_args.bin"), "trainer settings");
    mkdirSync(join(base, "extra"));
    writeFileSync(join(base, "extra", "notes.txt"), "notes");
    const r = await cli(["merge", "--base", base, "--adapter", at("adapter"), "--out", at("merged_more"), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { copied: string[]; leftOut: string[] };
    expect(doc.leftOut).toEqual(["pytorch_model.bin"]);
    expect(doc.copied).toEqual(expect.arrayContaining(["training_args.bin", join("extra", "notes.txt"), "config.json"]));
    expect(existsSync(at("merged_more/pytorch_model.bin"))).toBe(false);
    expect(readFileSync(at("merged_more/extra/notes.txt"), "utf8")).toBe("notes");
  });

  it("a one-file folder base with --out <name>.safetensors gives just the weights file; a sharded base refuses that name", async () => {
    const file = at("weights-only.safetensors");
    const r = await cli(["merge", "--base", at("base"), "--adapter", at("adapter"), "--out", file]);
    expect(r.code, r.stderr).toBe(0);
    expect((await readSafetensors(file)).tensors.size).toBeGreaterThan(0);
    const s = await cli(["merge", "--base", at("base_sharded"), "--adapter", at("adapter"), "--out", at("x.safetensors")]);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/--out .*x\.safetensors: a sharded base gives a model folder/);
  });
});
