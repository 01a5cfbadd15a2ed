/**
 * Layer math against the references on the same tensors: loralib MergedLinear (with and without
 * fan_in_fan_out), Embedding and Conv2d merges through real loralib; PEFT's exact `cat` combination through
 * real PEFT add_weighted_adapter + merge_and_unload. All within 1e-6 absolute in F32.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LoraModule } from "../../src/adapter/adapter.js";
import { catAdapters } from "../../src/adapter/combine.js";
import { registerCombine } from "../../src/cli/commands/combine.js";
import { runCli } from "../helpers/cli.js";
import { resolveModule } from "../../src/adapter/config.js";
import { deltaWeight, loralibConvDelta, mergedLinearDelta, mergeWeight } from "../../src/adapter/math.js";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { readSafetensors } from "../../src/formats/safetensors/index.js";
import { toFloat32, type Tensor } from "../../src/tensor/index.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/math_cases.py"), "utf8");

interface Cases {
  cases: Record<string, { scaling: number; out?: number; enable?: boolean[]; ffo?: boolean }>;
  cat_modules: string[];
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function addInto(W: Tensor, d: Tensor): Float32Array {
  const w = toFloat32(W, true);
  const x = toFloat32(d);
  for (let i = 0; i < w.length; i++) w[i] = w[i]! + x[i]!;
  return w;
}

describe("layer math vs loralib and PEFT", () => {
  const tmp = tempDir("loraport-math-");
  let info: Cases;
  let t: Map<string, Tensor>;
  beforeAll(async () => {
    info = runPythonJson<Cases>(SCRIPT, [tmp.dir]);
    t = (await readSafetensors(join(tmp.dir, "loralib.safetensors"))).tensors;
  }, limit(120_000));
  afterAll(() => tmp.cleanup());

  for (const name of ["merged_linear", "merged_linear_ffo"]) {
    it(`loralib MergedLinear (${name === "merged_linear" ? "nn.Linear layout" : "fan_in_fan_out"}): W + ΔW equals loralib's merge`, () => {
      const c = info.cases[name]!;
      const d = mergedLinearDelta(t.get(`${name}.A`)!, t.get(`${name}.B`)!, c.enable!, c.out!, c.scaling, c.ffo!, name);
      const err = maxAbs(addInto(t.get(`${name}.W`)!, d), toFloat32(t.get(`${name}.merged`)!));
      console.log(`${name}: max abs vs loralib ${err.toExponential(2)}`);
      expect(err).toBeLessThanOrEqual(1e-6);
    });
  }

  it("loralib Embedding: merge equals loralib's (W += s·(B·A)ᵀ)", () => {
    const m: LoraModule = { kind: "embedding", A: t.get("embedding.A")!, B: t.get("embedding.B")! };
    const err = maxAbs(toFloat32(mergeWeight(t.get("embedding.W")!, m, info.cases["embedding"]!.scaling)), toFloat32(t.get("embedding.merged")!));
    expect(err).toBeLessThanOrEqual(1e-6);
  });

  it("loralib Conv2d: s·reshape(B·A) equals loralib's merge", () => {
    const W = t.get("conv2d.W")!;
    const d = loralibConvDelta(t.get("conv2d.A")!, t.get("conv2d.B")!, W.shape, info.cases["conv2d"]!.scaling);
    expect(maxAbs(addInto(W, d), toFloat32(t.get("conv2d.merged")!))).toBeLessThanOrEqual(1e-6);
  });

  it("unmerge restores the base (W + ΔW − ΔW)", () => {
    const m: LoraModule = { kind: "embedding", A: t.get("embedding.A")!, B: t.get("embedding.B")! };
    const s = info.cases["embedding"]!.scaling;
    const back = mergeWeight(mergeWeight(t.get("embedding.W")!, m, s), m, s, { unmerge: true });
    expect(maxAbs(toFloat32(back), toFloat32(t.get("embedding.W")!))).toBeLessThanOrEqual(1e-7);
  });

  it("cat: loraport's concatenation equals PEFT add_weighted_adapter(cat), and ΔW_cat = ΔW_a + 0.5·ΔW_b", async () => {
    const a = (await readPeftAdapter(join(tmp.dir, "cat", "first"))).adapter;
    const b = (await readPeftAdapter(join(tmp.dir, "cat", "second"))).adapter;
    const peftCat = (await readPeftAdapter(join(tmp.dir, "cat", "cat"))).adapter;
    const ours = catAdapters([a, b], [1.0, 0.5]);
    const base = (await readSafetensors(join(tmp.dir, "cat_base.safetensors"))).tensors;
    const merged = (await readSafetensors(join(tmp.dir, "cat_merged.safetensors"))).tensors;
    let worst = 0;
    let sumErr = 0;
    for (const name of info.cat_modules) {
      const m = ours.modules.get(name)!;
      expect(m.A.shape[0]).toBe(peftCat.modules.get(name)!.A.shape[0]); // rank 4 + 2
      const s = resolveModule(ours.config, name).scaling;
      worst = Math.max(worst, maxAbs(toFloat32(mergeWeight(base.get(`${name}.weight`)!, m, s)), toFloat32(merged.get(`${name}.weight`)!)));
      const dCat = toFloat32(deltaWeight(m, s));
      const dA = toFloat32(deltaWeight(a.modules.get(name)!, resolveModule(a.config, name).scaling));
      const dB = toFloat32(deltaWeight(b.modules.get(name)!, resolveModule(b.config, name).scaling));
      sumErr = Math.max(sumErr, maxAbs(dCat, dA.map((x, i) => x + 0.5 * dB[i]!)));
    }
    console.log(`cat: max abs vs PEFT merged ${worst.toExponential(2)}, vs ΔW_a + 0.5ΔW_b ${sumErr.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(1e-6);
    expect(sumErr).toBeLessThanOrEqual(1e-6);
  });

  it("CLI: loraport combine writes the same adapter, which merges to PEFT's cat; bad weights are one-line errors", async () => {
    const out = join(tmp.dir, "cat-cli");
    const logs = await runCli([registerCombine], ["combine", join(tmp.dir, "cat", "first"), join(tmp.dir, "cat", "second"), "--weights", "1,0.5", "--out", out]);
    expect(logs).toMatch(/combined 2 adapters \(weights 1, 0\.5\) into \d+ modules of rank 6/);
    const got = (await readPeftAdapter(out)).adapter;
    const base = (await readSafetensors(join(tmp.dir, "cat_base.safetensors"))).tensors;
    const merged = (await readSafetensors(join(tmp.dir, "cat_merged.safetensors"))).tensors;
    let worst = 0;
    for (const name of info.cat_modules) {
      const s = resolveModule(got.config, name).scaling;
      worst = Math.max(worst, maxAbs(toFloat32(mergeWeight(base.get(`${name}.weight`)!, got.modules.get(name)!, s)), toFloat32(merged.get(`${name}.weight`)!)));
    }
    expect(worst).toBeLessThanOrEqual(1e-6);
    await expect(runCli([registerCombine], ["combine", join(tmp.dir, "cat", "first"), join(tmp.dir, "cat", "second"), "--weights", "1", "--out", out]))
      .rejects.toThrow(/--weights '1': 1 weights for 2 adapters/);
  });
});
