/**
 * `loraport merge` on a sharded base: output sharded like the base with the base's names, values equal to
 * PEFT merge_and_unload, base untouched; bad base/adapter pairs are errors naming the module and both shapes.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../helpers/cli.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mergeModel } from "../../src/adapter/merge-model.js";
import { readPeftAdapter, writePeftAdapter } from "../../src/adapter/peft-io.js";
import { ShapeMismatchError, NonFiniteError } from "../../src/errors.js";
import { registerMerge } from "../../src/cli/commands/merge.js";
import { openSafetensorsModel, readSafetensors } from "../../src/formats/safetensors/index.js";
import { castTo, toFloat32, type Tensor } from "../../src/tensor/index.js";
import type { LoraAdapter } from "../../src/adapter/adapter.js";
import { mergeWeight } from "../../src/adapter/math.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/sharded_merge.py"), "utf8");

function hashFolder(dir: string): string {
  const h = createHash("sha256");
  for (const f of readdirSync(dir).sort()) h.update(f).update(readFileSync(join(dir, f)));
  return h.digest("hex");
}

describe("merge into a sharded base", () => {
  const tmp = tempDir("loraport-merge-");
  const base = join(tmp.dir, "base");
  let baseHash = "";
  beforeAll(() => {
    runPythonJson(SCRIPT, [tmp.dir]);
    baseHash = hashFolder(base);
  }, limit(120_000));
  afterAll(() => tmp.cleanup());

  it("writes the base's shards and names, values equal to PEFT merge_and_unload (incl. modules_to_save lm_head)", async () => {
    const { adapter } = await readPeftAdapter(join(tmp.dir, "adapter"));
    const out = join(tmp.dir, "merged");
    const events: number[] = [];
    const report = await mergeModel(base, adapter, out, { safe: true, onProgress: (e) => events.push(e.done) });
    expect(report.merged.length).toBe(10);
    expect(report.replaced).toEqual(["lm_head.weight"]);
    expect(events.at(-1)).toBe(report.tensors);
    const baseFiles = readdirSync(base).filter((f) => !f.startsWith(".")).sort();
    expect(readdirSync(out).sort()).toEqual(baseFiles);
    const bIndex = JSON.parse(readFileSync(join(base, "model.safetensors.index.json"), "utf8"));
    const oIndex = JSON.parse(readFileSync(join(out, "model.safetensors.index.json"), "utf8"));
    expect(oIndex.weight_map).toEqual(bIndex.weight_map);
    expect(oIndex.metadata.total_size).toBe(bIndex.metadata.total_size);
    const ref = (await readSafetensors(join(tmp.dir, "peft_merged.safetensors"))).tensors;
    const ours = await openSafetensorsModel(out);
    try {
      expect([...ours.names].sort()).toEqual([...ref.keys()].sort());
      let worst = 0;
      for (const n of ours.names) {
        const a = toFloat32(await ours.read(n));
        const b = toFloat32(ref.get(n)!);
        for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      }
      console.log(`sharded merge vs PEFT merge_and_unload: max abs ${worst.toExponential(2)} over ${ours.names.length} tensors`);
      expect(worst).toBeLessThanOrEqual(1e-6);
    } finally {
      await ours.close();
    }
    expect(hashFolder(base)).toBe(baseHash); // the base is only read
  });

  it("a BF16 base: same as PEFT's merge into BF16 up to rare 1-ulp rounding flips", async () => {
    const { adapter } = await readPeftAdapter(join(tmp.dir, "adapter"));
    const out = join(tmp.dir, "merged-bf16.safetensors");
    await mergeModel(join(tmp.dir, "base_bf16"), adapter, out);
    const ours = (await readSafetensors(out)).tensors;
    const ref = (await readSafetensors(join(tmp.dir, "peft_merged_bf16.safetensors"))).tensors;
    let differ = 0;
    let total = 0;
    let worstUlps = 0;
    for (const [n, t] of ref) {
      expect(ours.get(n)!.dtype).toBe("BF16");
      const a = ours.get(n)!.data as Uint16Array;
      const b = t.data as Uint16Array;
      for (let i = 0; i < b.length; i++) {
        total++;
        if (a[i] !== b[i]) {
          differ++;
          // Same sign and exponent neighbourhood: adjacent BF16 codes differ by 1.
          worstUlps = Math.max(worstUlps, Math.abs(a[i]! - b[i]!));
        }
      }
    }
    console.log(`BF16 base: ${differ} of ${total} values differ from PEFT (max ${worstUlps} ulp)`);
    expect(worstUlps).toBeLessThanOrEqual(1);
    expect(differ / total).toBeLessThan(1e-3);
  });

  it("--dtype bf16 casts every float tensor after merging in F32", async () => {
    const { adapter } = await readPeftAdapter(join(tmp.dir, "adapter"));
    const f32 = join(tmp.dir, "m32");
    const bf = join(tmp.dir, "mbf16");
    await mergeModel(base, adapter, f32, {});
    await mergeModel(base, adapter, bf, { dtype: "BF16" });
    const a = await openSafetensorsModel(f32);
    const b = await openSafetensorsModel(bf);
    try {
      for (const n of a.names) {
        const t = await b.read(n);
        expect(t.dtype).toBe("BF16");
        expect(Array.from(t.data as Uint16Array)).toEqual(Array.from(castTo(await a.read(n), "BF16").data as Uint16Array));
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("a base that does not fit: error names the module and both shapes", async () => {
    const { adapter } = await readPeftAdapter(join(tmp.dir, "adapter"));
    const name = "model.layers.0.self_attn.q_proj";
    const m = adapter.modules.get(name)!;
    const wide: LoraAdapter = { ...adapter, modules: new Map([[name, { ...m, A: { dtype: "F32", shape: [16, 96], data: new Float32Array(16 * 96) } }]]), extraTensors: new Map() };
    const err = await mergeModel(base, wide, join(tmp.dir, "bad"), {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShapeMismatchError);
    expect((err as Error).message).toContain(name);
    expect((err as Error).message).toContain("[64, 64]");
    expect((err as Error).message).toContain("[64, 96]");
    const missing: LoraAdapter = { ...adapter, modules: new Map([["model.layers.9.self_attn.q_proj", m]]), extraTensors: new Map() };
    const err2 = await mergeModel(base, missing, join(tmp.dir, "bad2"), {}).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(ShapeMismatchError);
    expect((err2 as Error).message).toContain("model.layers.9.self_attn.q_proj");
    expect(readdirSync(tmp.dir).filter((f) => f.startsWith(".bad"))).toEqual([]); // no temp left behind
  });

  it("--safe refuses non-finite results, naming the module", async () => {
    const { adapter } = await readPeftAdapter(join(tmp.dir, "adapter"));
    const name = "model.layers.1.mlp.down_proj";
    const m = adapter.modules.get(name)!;
    const B = new Float32Array(toFloat32(m.B, true));
    B[0] = Infinity;
    const bad: LoraAdapter = { ...adapter, modules: new Map([[name, { ...m, B: { dtype: "F32", shape: m.B.shape, data: B } }]]), extraTensors: new Map() };
    const err = await mergeModel(base, bad, join(tmp.dir, "nf"), { safe: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect((err as Error).message).toContain(name);
  });

  it("CLI: loraport merge --base --adapter --out", async () => {
    const out = join(tmp.dir, "cli-out");
    const logs = await runCli([registerMerge], ["merge", "--base", base, "--adapter", join(tmp.dir, "adapter"), "--out", out, "--dtype", "f16"]);
    expect(logs).toMatch(/merged 10 modules into 21 tensors/);
    const src = await openSafetensorsModel(out);
    try {
      expect((await src.read(src.names[0]!)).dtype).toBe("F16");
    } finally {
      await src.close();
    }
  });

  it("CLI: loraport merge --unmerge takes the adapter back out (W' − ΔW = W), base and input untouched; refusals name the reason", async () => {
    const { adapter } = await readPeftAdapter(join(tmp.dir, "adapter"));
    const plain = join(tmp.dir, "adapter-no-head");
    await writePeftAdapter(plain, { ...adapter, extraTensors: new Map() }); // modules_to_save cannot be unmerged
    const merged = join(tmp.dir, "to-unmerge");
    await mergeModel(base, (await readPeftAdapter(plain)).adapter, merged);
    const mergedHash = hashFolder(merged);
    const out = join(tmp.dir, "unmerged");
    const logs = await runCli([registerMerge], ["merge", "--unmerge", "--base", merged, "--adapter", plain, "--out", out]);
    expect(logs).toMatch(/unmerged 10 modules from 21 tensors/);
    expect(hashFolder(merged)).toBe(mergedHash);
    const a = await openSafetensorsModel(out);
    const b = await openSafetensorsModel(base);
    const m = await openSafetensorsModel(merged);
    try {
      let worst = 0;
      let moved = 0;
      for (const n of b.names) {
        const x = toFloat32(await a.read(n));
        const y = toFloat32(await b.read(n));
        const z = toFloat32(await m.read(n));
        for (let i = 0; i < x.length; i++) {
          worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
          moved = Math.max(moved, Math.abs(z[i]! - y[i]!));
        }
      }
      console.log(`merge then unmerge vs the base: max abs ${worst.toExponential(2)} (the merge moved weights by up to ${moved.toExponential(2)})`);
      expect(worst).toBeLessThanOrEqual(1e-6);
      expect(moved).toBeGreaterThan(1e-3);
    } finally {
      await Promise.all([a.close(), b.close(), m.close()]);
    }
    const withHead = await mergeModel(merged, adapter, join(tmp.dir, "nope"), { unmerge: true }).catch((e: unknown) => e);
    expect((withHead as Error).message).toMatch(/unmerge: lm_head\.weight is a copy saved whole by the adapter/);
    expect(readdirSync(tmp.dir)).not.toContain("nope");
  });

  it("a single-file base gives a single file; the adapter written by loraport merges the same", async () => {
    const { adapter } = await readPeftAdapter(join(tmp.dir, "adapter"));
    await writePeftAdapter(join(tmp.dir, "adapter2"), adapter);
    const again = (await readPeftAdapter(join(tmp.dir, "adapter2"))).adapter;
    const all = await openSafetensorsModel(base);
    const single = join(tmp.dir, "single.safetensors");
    try {
      const { writeSafetensors } = await import("../../src/formats/safetensors/index.js");
      const m = new Map();
      for (const n of all.names) m.set(n, await all.read(n));
      await writeSafetensors(single, m);
    } finally {
      await all.close();
    }
    const r = await mergeModel(single, again, join(tmp.dir, "single-merged.safetensors"));
    expect(r.files).toEqual([join(tmp.dir, "single-merged.safetensors")]);
    const ref = (await readSafetensors(join(tmp.dir, "peft_merged.safetensors"))).tensors;
    const got = (await readSafetensors(r.files[0]!)).tensors;
    let worst = 0;
    for (const [n, t] of ref) {
      const a = toFloat32(got.get(n)!);
      const b = toFloat32(t);
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    }
    expect(worst).toBeLessThanOrEqual(1e-6);
  });

  it("streams many tensors (adapted and passed through) with pooled buffers: every output tensor exact", async () => {
    const { writeSafetensors } = await import("../../src/formats/safetensors/index.js");
    const { loraConfig } = await import("../../src/adapter/config.js");
    const rnd = (n: number, seed: number) => {
      let x = seed;
      return Float32Array.from({ length: n }, () => ((x = (x * 1103515245 + 12345) >>> 0), x / 2 ** 32 - 0.5));
    };
    const base = new Map<string, Tensor>();
    const modules = new Map<string, LoraAdapter["modules"] extends ReadonlyMap<string, infer M> ? M : never>();
    for (let i = 0; i < 24; i++) {
      const name = `layers.${String(i).padStart(2, "0")}.proj`;
      base.set(`${name}.weight`, { dtype: "F32", shape: [256, 512], data: rnd(256 * 512, i + 1) });
      base.set(`${name}.extra`, { dtype: "F32", shape: [384, 512], data: rnd(384 * 512, i + 100) });
      if (i % 2 === 0) modules.set(name, { kind: "linear", A: { dtype: "F32", shape: [4, 512], data: rnd(4 * 512, i + 200) }, B: { dtype: "F32", shape: [256, 4], data: rnd(256 * 4, i + 300) } });
    }
    const basePath = join(tmp.dir, "many.safetensors");
    await writeSafetensors(basePath, base);
    const adapter: LoraAdapter = { config: loraConfig({ r: 4, lora_alpha: 8, target_modules: ["proj"] }), modules, extraTensors: new Map() };
    const out = join(tmp.dir, "many-merged.safetensors");
    await mergeModel(basePath, adapter, out);
    const got = (await readSafetensors(out)).tensors;
    for (const [k, t] of base) {
      const m = modules.get(k.replace(/\.weight$/, ""));
      const want = m ? mergeWeight(t, m, 2) : t;
      const g = got.get(k)!.data as Float32Array;
      const w = want.data as Float32Array;
      let diff = 0;
      for (let i = 0; i < w.length; i++) diff = Math.max(diff, Math.abs(g[i]! - w[i]!));
      expect(diff, k).toBe(0);
    }
  });
});
