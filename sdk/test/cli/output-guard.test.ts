/**
 * Outputs never replace inputs (issue 12, class 4): `merge`, `combine` and `convert` refuse an `--out` that is, lies
 * inside, or holds one of their inputs — also through a symlink or a hard link — with a typed error naming `--out`
 * and the input, exit 1, and the input's bytes unchanged. A fresh output next to the inputs still works.
 */
import { createHash } from "node:crypto";
import { linkSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OutputIsInputError } from "../../src/errors.js";
import { assertOutputNotInput } from "../../src/internal/output-guard.js";
import { runPython, tempDir } from "../helpers/python.js";
import { cli, writeTinyAdapter, writeTinyBase } from "./cli-fixtures.js";
import { limit } from "../helpers/timeouts.js";

function hashTree(path: string): string {
  const h = createHash("sha256");
  const walk = (p: string): void => {
    if (statSync(p).isDirectory()) for (const n of readdirSync(p).sort()) walk(join(p, n));
    else h.update(p).update(readFileSync(p));
  };
  walk(path);
  return h.digest("hex");
}

describe("outputs never replace inputs", () => {
  const tmp = tempDir("loraport-guard-");
  const base = join(tmp.dir, "base.safetensors");
  const A = join(tmp.dir, "A");
  const B = join(tmp.dir, "B");
  const ckpt = join(tmp.dir, "ckpt.pt");
  beforeAll(async () => {
    await writeTinyBase(base);
    await writeTinyAdapter(A, 2);
    await writeTinyAdapter(B, 3);
    runPython("import sys, torch; torch.save({'w': torch.arange(6.0).reshape(2, 3), 'b': torch.ones(3)}, sys.argv[1])", [ckpt]);
  }, limit(300_000));
  afterAll(() => tmp.cleanup());

  const refused = async (argv: string[], input: string, inputFlag: RegExp): Promise<void> => {
    const before = hashTree(input);
    const r = await cli(argv);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^loraport: --out /);
    expect(r.stderr).toMatch(inputFlag);
    expect(r.stderr).toContain("outputs never replace inputs");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(hashTree(input)).toBe(before);
  };

  it("merge --out <the adapter's own adapter_model.safetensors> is refused; the adapter is unchanged", async () => {
    await refused(["merge", "--base", base, "--adapter", A, "--out", join(A, "adapter_model.safetensors")], A, /lies inside --adapter /);
    await refused(["merge", "--base", base, "--adapter", A, "--out", base], base, /is --base /);
    await refused(["merge", "--base", base, "--adapter", A, "--out", join(tmp.dir, "A", "..", "A")], A, /is --adapter /);
  });

  it("combine A A --out A, and an --out holding an input, are refused", async () => {
    await refused(["combine", A, A, "--out", A], A, /is input adapter /);
    await refused(["combine", A, B, "--out", tmp.dir], A, /is a folder holding input adapter /);
  });

  it("through symlinks: a linked output file, a linked output folder, an output under a linked parent", async () => {
    const linkFile = join(tmp.dir, "link-to-base.safetensors");
    const linkDir = join(tmp.dir, "link-to-A");
    symlinkSync(base, linkFile);
    symlinkSync(A, linkDir);
    await refused(["merge", "--base", base, "--adapter", A, "--out", linkFile], base, /is --base /);
    await refused(["combine", A, B, "--out", linkDir], A, /is input adapter /);
    await refused(["merge", "--base", base, "--adapter", A, "--out", join(linkDir, "new-sub", "merged.safetensors")], A, /lies inside --adapter /);
    const linkCkpt = join(tmp.dir, "link-ckpt.pt");
    symlinkSync(ckpt, linkCkpt);
    await refused(["convert", ckpt, "--out", linkCkpt], ckpt, /is <input> /);
  });

  it("through hard links: an output that is another name of an input file", async () => {
    const hardBase = join(tmp.dir, "hard-base.safetensors");
    const hardCkpt = join(tmp.dir, "hard-ckpt.pt");
    const hardAdapterFile = join(tmp.dir, "hard-adapter.safetensors");
    linkSync(base, hardBase);
    linkSync(ckpt, hardCkpt);
    linkSync(join(B, "adapter_model.safetensors"), hardAdapterFile);
    await refused(["merge", "--base", base, "--adapter", A, "--out", hardBase], base, /is --base /);
    await refused(["convert", ckpt, "--out", hardCkpt], ckpt, /is <input> /);
    await refused(["merge", "--base", base, "--adapter", B, "--out", hardAdapterFile], B, /is a hard link of .*adapter_model\.safetensors, part of --adapter /);
    // The API throws the typed error, naming both sides.
    const err = (() => {
      try {
        assertOutputNotInput({ flag: "--checkpoint", path: hardCkpt }, [{ flag: "--data", path: ckpt }]);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(OutputIsInputError);
    expect(err).toMatchObject({ code: "E_OUTPUT_IS_INPUT", outputFlag: "--checkpoint", inputFlag: "--data", input: ckpt });
  });

  it("a fresh output beside the inputs is written (the guard does not refuse neighbours or names sharing a prefix)", async () => {
    mkdirSync(join(tmp.dir, "fresh"));
    const r = await cli(["combine", A, B, "--out", join(tmp.dir, "A-and-B")]);
    expect(r.code, r.stderr).toBe(0);
    const m = await cli(["merge", "--base", base, "--adapter", A, "--out", join(tmp.dir, "fresh", "merged.safetensors")]);
    expect(m.code, m.stderr).toBe(0);
    const c = await cli(["convert", ckpt, "--out", join(tmp.dir, "ckpt.pt.safetensors")]);
    expect(c.code, c.stderr).toBe(0);
  });
});
