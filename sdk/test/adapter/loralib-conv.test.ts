/**
 * loralib ConvLoRA (lora.Conv2d) → PEFT conv LoRA, exactly: real loralib makes, merges and runs the checkpoint;
 * `loraport convert --to peft` rewrites each conv as a PEFT conv LoRA of the rank that makes it exact (r·k², out or
 * in·k², whichever is least); real PEFT loads it onto the plain-torch twin and gives loralib's forward and merged
 * weights, and `loraport merge` of the converted adapter gives loralib's merged weights.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdapterError, ShapeMismatchError } from "../../src/errors.js";
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
  ranks: Record<string, number>;
  scalings: Record<string, number>;
}

describe("loralib ConvLoRA → PEFT conv LoRA", () => {
  const tmp = tempDir("loraport-loralib-conv-");
  const peft = join(tmp.dir, "peft");
  let convertText = "";
  let check: Check;

  beforeAll(async () => {
    runPythonJson(SCRIPT, ["make", tmp.dir]);
    convertText = await runCli([registerConvert], ["convert", join(tmp.dir, "loralib.pt"), "--to", "peft", "--out", peft, "--r", "2", "--alpha", "4"]);
    check = runPythonJson<Check>(SCRIPT, ["check", tmp.dir, peft]);
  }, limit(150_000));
  afterAll(() => tmp.cleanup());

  it("each conv gets the least exact rank, stated in the output; the Linear keeps r", () => {
    expect(convertText).toMatch(/a: loralib Conv2d 2×2 .* rank r·k² = 2·2² = 8 /);
    expect(convertText).toMatch(/b: loralib Conv2d 3×3 .* rank out = 5 < r·k² = 18 /);
    expect(convertText).toMatch(/c: loralib Conv2d 3×3 .* rank in·k² = 9 < r·k² = 18 /);
    expect(check.ranks).toEqual({ a: 8, b: 5, c: 9, head: 2 });
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
    const out = join(tmp.dir, "merged-by-loraport.safetensors");
    await runCli([registerMerge], ["merge", "--base", join(tmp.dir, "base.safetensors"), "--adapter", peft, "--out", out]);
    const got = (await readSafetensors(out)).tensors;
    const want = (await readSafetensors(join(tmp.dir, "merged.safetensors"))).tensors;
    let max = 0;
    for (const [k, t] of want) {
      const x = toFloat32(got.get(k)!);
      const y = toFloat32(t);
      for (let i = 0; i < y.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
    }
    console.log(`loralib ConvLoRA: loraport merge vs loralib merge max abs ${max.toExponential(2)} over ${want.size} tensors`);
    expect(max).toBeLessThanOrEqual(1e-6);
  });

  it("refuses in one typed line what does not fit: a wrong --r, and a grouped conv at merge", async () => {
    const ckpt = await readLoralibCheckpoint(join(tmp.dir, "loralib.pt"));
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
  });
});
