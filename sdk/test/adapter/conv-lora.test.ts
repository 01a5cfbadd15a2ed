/**
 * PEFT LoRA on nn.Conv1d / nn.Conv2d / nn.Conv3d (stride, padding, 1×1 kernels, rsLoRA, rank/alpha patterns, lora_bias, DoRA),
 * built by real PEFT on a small seeded module: loraport reads, inspects, rewrites, merges and unmerges them, and
 * the numbers are PEFT's (merge_and_unload, unmerge_adapter, and PEFT's own forward where PEFT cannot merge).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UnsupportedFeatureError } from "../../src/errors.js";
import { readPeftAdapter, writePeftAdapter } from "../../src/adapter/peft-io.js";
import { registerMerge } from "../../src/cli/commands/merge.js";
import { inspectAdapter } from "../../src/cli/commands/inspect-adapter.js";
import { registerInspect } from "../../src/cli/commands/inspect.js";
import { readSafetensors } from "../../src/formats/safetensors/index.js";
import { toFloat32 } from "../../src/tensor/index.js";
import { runCli } from "../helpers/cli.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/conv_lora_cases.py"), "utf8");
const MERGEABLE = ["conv", "dora", "conv3d_1x1"];

interface Check {
  warnings?: string[];
  keys_equal?: boolean;
  tensor_max_diff?: number;
  forward_max_abs?: number;
  forward_max_rel?: number;
}

/** Max |a − b| over every tensor of two safetensors files with the same names. */
async function maxAbsFiles(a: string, b: string): Promise<{ max: number; names: number }> {
  const ta = (await readSafetensors(a)).tensors;
  const tb = (await readSafetensors(b)).tensors;
  expect([...ta.keys()].sort()).toEqual([...tb.keys()].sort());
  let max = 0;
  for (const [k, t] of tb) {
    const x = toFloat32(ta.get(k)!);
    const y = toFloat32(t);
    for (let i = 0; i < y.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
  }
  return { max, names: tb.size };
}

describe("nn.Conv1d / Conv2d / Conv3d LoRA against PEFT", () => {
  const tmp = tempDir("loraport-conv-");
  const cases = join(tmp.dir, "cases");
  const out = join(tmp.dir, "out");
  let made: { cases: string[]; peft_refused: Record<string, string> };
  let check: Record<string, Check> = {};

  beforeAll(async () => {
    made = runPythonJson(SCRIPT, ["make", cases]);
    for (const c of MERGEABLE) {
      const { adapter } = await readPeftAdapter(join(cases, c, "peft"));
      await writePeftAdapter(join(out, c, "peft"), adapter);
      await runCli([registerMerge], ["merge", "--base", join(cases, c, "base.safetensors"), "--adapter", join(cases, c, "peft"), "--out", join(out, c, "merged.safetensors")]);
    }
    check = runPythonJson(SCRIPT, ["check", cases, out]);
  }, limit(180_000));
  afterAll(() => tmp.cleanup());

  it("reads each conv as its own kind (nn_conv1d / conv2d / conv3d; conv1d stays transformers' Conv1D)", async () => {
    const { adapter } = await readPeftAdapter(join(cases, "conv", "peft"));
    const kinds = Object.fromEntries([...adapter.modules].map(([n, m]) => [n, m.kind]));
    expect(kinds).toEqual({ c1: "nn_conv1d", c1x1: "nn_conv1d", c2: "conv2d", c3: "conv3d" });
    const text = await runCli([registerInspect], ["inspect", join(cases, "conv", "peft")]);
    // This case has lora_bias: the config line and each kind say so.
    expect(text).toMatch(/, lora_bias, /);
    expect(text).toMatch(/c3\s+conv3d\+bias\s+3\s+4\s/);
    expect(text).toMatch(/c1\s+nn_conv1d\+bias\s+2\s+4\s/);
    const dora = await readPeftAdapter(join(cases, "dora", "peft"));
    expect([...dora.adapter.modules.values()].every((m) => m.magnitude !== undefined)).toBe(true);
    // inspect names conv DoRA per module (`<kind>+dora`) and in --json; no lora_bias (PEFT refuses it with DoRA).
    const seen = await inspectAdapter(join(cases, "dora", "peft"));
    const json = seen!.json as { useDora: boolean; loraBias: boolean; modules: { kind: string; dora: boolean; loraBias: boolean }[] };
    expect(json.useDora).toBe(true);
    expect(json.loraBias).toBe(false);
    expect(json.modules.every((m) => m.dora && !m.loraBias)).toBe(true);
    expect(seen!.text).toMatch(/, DoRA, /);
    for (const m of json.modules) expect(seen!.text).toMatch(new RegExp(`\\s${m.kind}\\+dora\\s`));
    expect(seen!.text).not.toContain("bias");
  });

  it("PEFT loads loraport's rewrite of each adapter with no warnings and the same tensors", () => {
    for (const c of MERGEABLE) {
      expect(check[c]!.warnings, c).toEqual([]);
      expect(check[c]!.keys_equal, c).toBe(true);
      expect(check[c]!.tensor_max_diff, c).toBe(0);
    }
  });

  for (const c of ["conv", "dora"]) {
    it(`${c}: loraport merge equals PEFT merge_and_unload within 1e-6`, async () => {
      const { max, names } = await maxAbsFiles(join(out, c, "merged.safetensors"), join(cases, c, "merged.safetensors"));
      console.log(`conv LoRA ${c}: max abs loraport merge vs PEFT merge_and_unload ${max.toExponential(2)} over ${names} tensors`);
      expect(max).toBeLessThanOrEqual(1e-6);
    });
  }

  it("conv3d 1×1×1: PEFT 0.21's merge raises, loraport's merge gives PEFT's own forward", () => {
    expect(made.peft_refused["conv3d_1x1"]).toMatch(/RuntimeError/);
    for (const c of MERGEABLE) {
      const r = check[c]!;
      console.log(`conv LoRA ${c}: loraport-merged forward vs PEFT forward max abs ${r.forward_max_abs!.toExponential(2)}, rel ${r.forward_max_rel!.toExponential(2)}`);
      expect(r.forward_max_rel, c).toBeLessThanOrEqual(1e-6);
    }
  });

  it("unmerge: loraport merge --unmerge of PEFT's merged weights equals PEFT's unmerge_adapter within 1e-6", async () => {
    const dst = join(out, "conv", "unmerged.safetensors");
    await runCli([registerMerge], ["merge", "--unmerge", "--base", join(cases, "conv", "merged.safetensors"), "--adapter", join(cases, "conv", "peft"), "--out", dst]);
    const { max } = await maxAbsFiles(dst, join(cases, "conv", "unmerged.safetensors"));
    console.log(`conv LoRA unmerge: max abs vs PEFT unmerge_adapter ${max.toExponential(2)}`);
    expect(max).toBeLessThanOrEqual(1e-6);
  });

  it("groups > 1: refused at read in one typed line, as PEFT refuses to merge it", async () => {
    expect(made.peft_refused["groups"]).toMatch(/groups > 1/);
    const err = await readPeftAdapter(join(cases, "groups", "peft")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedFeatureError);
    expect((err as Error).message).toMatch(/module cg: .*groups=2/);
    expect((err as Error).message).not.toContain("\n");
  });
});
