/**
 * loralib ConvLoRA (lora.Conv2d) → PEFT conv LoRA, exactly: real loralib makes, merges and runs the checkpoint;
 * `loraport convert --to peft` rewrites each conv as a PEFT conv LoRA of the rank that makes it exact (r·k², out or
 * in·k², whichever is least); real PEFT loads it onto the plain-torch twin and gives loralib's forward and merged
 * weights, and `loraport merge` of the converted adapter gives loralib's merged weights. With `--base`, loralib's
 * 1×…×1 Conv1d / Conv2d / Conv3d (factors shaped like lora.Linear's) convert too, and a grouped conv is refused.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdapterError, ShapeMismatchError, UnsupportedFeatureError } from "../../src/errors.js";
import { convertLoralibToPeft } from "../../src/adapter/convert.js";
import { readLoralibCheckpoint } from "../../src/adapter/loralib.js";
import { mergeModel } from "../../src/adapter/merge-model.js";
import { registerConvert } from "../../src/cli/commands/convert.js";
import { registerMerge } from "../../src/cli/commands/merge.js";
import { readSafetensors } from "../../src/formats/safetensors/index.js";
import { toFloat32 } from "../../src/tensor/index.js";
import { runCli } from "../helpers/cli.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/loralib_conv.py"), "utf8");

interface Check {
  warnings: string[];
  forward_max_abs: number;
  forward_max_rel: number;
  merged_max_abs: number;
  merged_max_rel: number;
  merge_refused?: string;
  ranks: Record<string, number>;
  scalings: Record<string, number>;
}

async function maxAbsFiles(a: string, b: string): Promise<number> {
  const got = (await readSafetensors(a)).tensors;
  const want = (await readSafetensors(b)).tensors;
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  let max = 0;
  for (const [k, t] of want) {
    const x = toFloat32(got.get(k)!);
    const y = toFloat32(t);
    for (let i = 0; i < y.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
  }
  return max;
}

describe("loralib ConvLoRA → PEFT conv LoRA", () => {
  const tmp = tempDir("loraport-loralib-conv-");
  const out = join(tmp.dir, "out");
  const peft = join(out, "main");
  let convertText = "";
  let onesText = "";
  let checks: Record<"main" | "ones", Check>;
  let check: Check;

  beforeAll(async () => {
    runPythonJson(SCRIPT, ["make", tmp.dir]);
    convertText = await runCli([registerConvert], ["convert", join(tmp.dir, "main.pt"), "--to", "peft", "--out", peft, "--r", "2", "--alpha", "4"]);
    onesText = await runCli([registerConvert], ["convert", join(tmp.dir, "ones.pt"), "--to", "peft", "--out", join(out, "ones"), "--r", "2", "--alpha", "4", "--base", join(tmp.dir, "ones_base.safetensors")]);
    checks = runPythonJson<Record<"main" | "ones", Check>>(SCRIPT, ["check", tmp.dir, out]);
    check = checks.main;
  }, limit(150_000));
  afterAll(() => tmp.cleanup());

  it("each conv gets the least exact rank, stated in the output; the Linear keeps r", () => {
    expect(convertText).toMatch(/a: loralib ConvLoRA .*groups 1 assumed.* rank r·k² = 2·2² = 8 /);
    expect(convertText).toMatch(/b: loralib ConvLoRA .* rank out = 5 < r·k² = 18 /);
    expect(convertText).toMatch(/c: loralib ConvLoRA .* rank in·k² = 9 < r·k² = 18 /);
    expect(check.ranks).toEqual({ a: 8, b: 5, c: 9, head: 2 });
    // Without --base a 1×1 conv's factors look like head's: the note names head, and only once.
    expect(convertText.match(/^note: head: converted as Linear; .* pass --base /gm)).toHaveLength(1);
    // s = 4/2 kept as alpha'/r' (a) or folded into the ΔW factor with alpha' = r' (b, c).
    expect(check.scalings).toEqual({ a: 2, b: 1, c: 1, head: 2 });
  });

  it("PEFT loads it with no warnings; forward and merge_and_unload equal loralib's within 1e-5 relative", () => {
    console.log(`loralib ConvLoRA → PEFT: forward max abs ${check.forward_max_abs.toExponential(2)} (rel ${check.forward_max_rel.toExponential(2)}), merged weights max abs ${check.merged_max_abs.toExponential(2)} (rel ${check.merged_max_rel.toExponential(2)})`);
    expect(check.warnings).toEqual([]);
    expect(check.forward_max_rel).toBeLessThanOrEqual(1e-5);
    expect(check.merged_max_rel).toBeLessThanOrEqual(1e-5);
  });

  it("loraport merge of the converted checkpoint equals loralib's merged weights", async () => {
    const merged = join(tmp.dir, "merged-by-loraport.safetensors");
    await runCli([registerMerge], ["merge", "--base", join(tmp.dir, "main_base.safetensors"), "--adapter", peft, "--out", merged]);
    const max = await maxAbsFiles(merged, join(tmp.dir, "main_merged.safetensors"));
    console.log(`loralib ConvLoRA: loraport merge vs loralib merge max abs ${max.toExponential(2)}`);
    expect(max).toBeLessThanOrEqual(1e-6);
  });

  it("--base: loralib's 1×…×1 Conv1d / Conv2d / Conv3d become PEFT conv LoRA of rank r; PEFT's forward and loraport's merge give loralib's numbers", async () => {
    expect(onesText).toMatch(/p: loralib ConvLoRA .*base weight \[4, 3, 1\]\) → PEFT nn_conv1d LoRA of rank r = 2/);
    expect(onesText).toMatch(/s: loralib ConvLoRA .*base weight \[3, 2, 1, 1, 1\]\) → PEFT conv3d LoRA of rank r = 2/);
    expect(onesText).not.toContain("converted as Linear");
    // The same checkpoint without --base converts silently wrong (PEFT's load fails on shape) but for the note.
    const noBase = convertLoralibToPeft(await readLoralibCheckpoint(join(tmp.dir, "ones.pt")), { r: 2, alpha: 4 });
    expect([...noBase.adapter.modules.values()].map((m) => m.kind)).toEqual(["linear", "linear", "linear"]);
    expect(noBase.report.lines.filter((l) => l.includes("converted as Linear"))).toEqual([expect.stringMatching(/^note: p, q, s: converted as Linear; .*pass --base/)]);
    const o = checks.ones;
    console.log(`loralib 1×…×1 ConvLoRA → PEFT: forward max abs ${o.forward_max_abs.toExponential(2)} (rel ${o.forward_max_rel.toExponential(2)})`);
    expect(o.warnings).toEqual([]);
    expect(o.ranks).toEqual({ p: 2, q: 2, s: 2 });
    expect(o.forward_max_rel).toBeLessThanOrEqual(1e-5);
    // PEFT 0.21's merge_and_unload raises on the 1×1×1 Conv3d (its 1×1 branch squeezes a 5-D kernel); loraport's merge is checked instead.
    expect(o.merge_refused).toMatch(/RuntimeError/);
    const merged = join(tmp.dir, "ones-merged-by-loraport.safetensors");
    await runCli([registerMerge], ["merge", "--base", join(tmp.dir, "ones_base.safetensors"), "--adapter", join(out, "ones"), "--out", merged]);
    expect(await maxAbsFiles(merged, join(tmp.dir, "ones_merged.safetensors"))).toBeLessThanOrEqual(1e-6);
  });

  it("refuses in one typed line what does not fit: a wrong --r, and a grouped conv at merge", async () => {
    const ckpt = await readLoralibCheckpoint(join(tmp.dir, "main.pt"));
    const wrongR = (() => {
      try {
        return convertLoralibToPeft(ckpt, { r: 3, alpha: 4 });
      } catch (e) {
        return e;
      }
    })();
    expect(wrongR).toBeInstanceOf(AdapterError);
    expect((wrongR as Error).message).not.toContain("\n");
    // loralib's grouped conv factors read as an ungrouped conv of other sizes; the base's shape refuses them.
    const grouped = convertLoralibToPeft(await readLoralibCheckpoint(join(tmp.dir, "grouped.pt")), { r: 2, alpha: 4 });
    const err = await mergeModel(join(tmp.dir, "grouped_base.safetensors"), grouped.adapter, join(tmp.dir, "g.safetensors")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShapeMismatchError);
    expect((err as Error).message).toMatch(/g: base weight 'g\.weight' has shape \[6, 2, 3, 3\]/);
    // With --base the groups are known: refused at convert.
    const withBase = await runCli([registerConvert], ["convert", join(tmp.dir, "grouped.pt"), "--to", "peft", "--out", join(tmp.dir, "g-peft"), "--r", "2", "--alpha", "4", "--base", join(tmp.dir, "grouped_base.safetensors")]).catch((e: unknown) => e);
    expect(withBase).toBeInstanceOf(UnsupportedFeatureError);
    expect((withBase as Error).message).toMatch(/^groups: g: loralib conv on a base with groups=2 \(weight \[6, 2, 3, 3\]\): PEFT does not merge/);
    expect(existsSync(join(tmp.dir, "g-peft"))).toBe(false);
  });
});
