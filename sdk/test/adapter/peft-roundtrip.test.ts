/**
 * PEFT round trips both ways through real PEFT, and merge math against PEFT's merge_and_unload:
 * PEFT builds adapters on tiny seeded models → loraport reads and rewrites them → PEFT loads loraport's
 * files with no warnings, and the tensors and config equal PEFT's own.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPeftAdapter, writePeftAdapter } from "../../src/adapter/peft-io.js";
import { mergeBias, mergeWeight } from "../../src/adapter/math.js";
import { resolveModule } from "../../src/adapter/config.js";
import { readSafetensors, writeSafetensors } from "../../src/formats/safetensors/index.js";
import { toFloat32, type Tensor } from "../../src/tensor/index.js";
import { runPython, runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const ALL = ["gpt2_conv1d", "llama", "roberta_cls", "dora", "rslora_patterns", "embedding", "lora_bias", "conv2d", "dora_conv_embedding", "bin"];
const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/peft_cases.py"), "utf8");

interface CheckResult {
  warnings: string[];
  unexpected: string[];
  tensor_max_diff: number;
  tensor_problems: string[];
  dtype_diffs: string[];
  extra_keys: string[];
  config_diff: string[];
  loaded_max_diff: number;
}

describe("PEFT adapters through loraport and back", () => {
  const tmp = tempDir("loraport-peft-");
  const cases = join(tmp.dir, "cases");
  const out = join(tmp.dir, "out");
  let names: string[] = [];
  let check: Record<string, CheckResult> = {};

  beforeAll(async () => {
    names = runPythonJson<{ cases: string[] }>(SCRIPT, ["make", cases]).cases;
    for (const c of names) {
      const { adapter } = await readPeftAdapter(join(cases, c, "peft"));
      await writePeftAdapter(join(out, c), adapter);
    }
    // Control for the warning capture: the same adapter with unprefixed keys (PEFT silently skips those and warns).
    const ctl = await readPeftAdapter(join(cases, "lora_bias", "peft"));
    const ctlDir = join(out, "_control");
    await writePeftAdapter(ctlDir, ctl.adapter);
    const sd = (await readSafetensors(join(ctlDir, "adapter_model.safetensors"))).tensors;
    await writeSafetensors(join(ctlDir, "adapter_model.safetensors"), [...sd].map(([k, t]) => [k.replace("base_model.model.", ""), t] as [string, Tensor]));
    check = runPythonJson<Record<string, CheckResult>>(SCRIPT, ["check", cases, out]);
  }, limit(240_000));
  afterAll(() => tmp.cleanup());

  it("the warning capture works: unprefixed keys make PEFT warn (control)", () => {
    const w = (check["_control"] as unknown as { warnings: string[] }).warnings;
    expect(w.some((m) => m.includes("missing adapter keys"))).toBe(true);
  });

  it("covers the issue's cases", () => {
    expect(names).toEqual(ALL);
  });

  for (const c of ALL) {
    it(`${c}: PEFT loads loraport's output with no warnings, same tensors, dtypes and config`, () => {
      const r = check[c]!;
      expect(r.warnings).toEqual([]);
      expect(r.unexpected).toEqual([]);
      expect(r.tensor_problems).toEqual([]);
      expect(r.extra_keys).toEqual([]);
      expect(r.tensor_max_diff).toBe(0);
      expect(r.dtype_diffs).toEqual([]);
      expect(r.config_diff).toEqual([]);
      expect(r.loaded_max_diff).toBe(0);
    });

    it(`${c}: merge equals PEFT merge_and_unload within 1e-6 (F32)`, async () => {
      const { adapter } = await readPeftAdapter(join(cases, c, "peft"));
      const base = (await readSafetensors(join(cases, c, "base.safetensors"))).tensors;
      const merged = (await readSafetensors(join(cases, c, "merged.safetensors"))).tensors;
      expect(adapter.modules.size).toBeGreaterThan(0);
      let worst = 0;
      for (const [name, m] of adapter.modules) {
        const { scaling } = resolveModule(adapter.config, name);
        const w = base.get(`${name}.weight`)!;
        const ours = toFloat32(mergeWeight(w, m, scaling, { module: name, safe: true }));
        const ref = toFloat32(merged.get(`${name}.weight`)!);
        for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - ref[i]!));
        if (m.bBias) {
          const b = toFloat32(mergeBias(base.get(`${name}.bias`)!, m.bBias, scaling, { module: name }));
          const rb = toFloat32(merged.get(`${name}.bias`)!);
          for (let i = 0; i < rb.length; i++) worst = Math.max(worst, Math.abs(b[i]! - rb[i]!));
        }
      }
      console.log(`${c}: max abs error vs PEFT merge = ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-6);
    });
  }

  it("writes adapter_config.json byte-identical to PEFT's when target order is not in question", () => {
    const ours = readFileSync(join(out, "lora_bias", "adapter_config.json"), "utf8");
    const theirs = readFileSync(join(cases, "lora_bias", "peft", "adapter_config.json"), "utf8");
    expect(ours).toBe(theirs);
  });

  it("reads mixed F32/F16/BF16 tensors in one file", async () => {
    const { adapter } = await readPeftAdapter(join(cases, "llama", "peft"));
    const dtypes = new Set([...adapter.modules.values()].flatMap((m) => [m.A.dtype, m.B.dtype]));
    expect([...dtypes].sort()).toEqual(["BF16", "F16", "F32"]);
  });

  it("resolves rsLoRA with rank and alpha patterns as PEFT does", async () => {
    const { adapter } = await readPeftAdapter(join(cases, "rslora_patterns", "peft"));
    const s = (n: string) => resolveModule(adapter.config, n).scaling;
    expect(s("model.layers.0.self_attn.q_proj")).toBeCloseTo(16 / Math.sqrt(8), 12);
    expect(s("model.layers.0.self_attn.v_proj")).toBeCloseTo(32 / Math.sqrt(8), 12);
    expect(s("model.layers.1.self_attn.q_proj")).toBeCloseTo(16 / Math.sqrt(4), 12);
    expect(resolveModule(adapter.config, "model.layers.1.self_attn.q_proj").r).toBe(4);
    expect(adapter.modules.get("model.embed_tokens")?.kind).toBe("embedding");
  });

  it("roberta_cls keeps the classifier head as modules_to_save tensors", async () => {
    const { adapter } = await readPeftAdapter(join(cases, "roberta_cls", "peft"));
    expect([...adapter.extraTensors.keys()].sort()).toEqual(["classifier.dense.bias", "classifier.dense.weight", "classifier.out_proj.bias", "classifier.out_proj.weight"]);
    expect(adapter.config.task_type).toBe("SEQ_CLS");
  });

  it("reads adapter_model.bin (torch pickle) through the safe torch reader", async () => {
    const r = await readPeftAdapter(join(cases, "bin", "peft"));
    expect(r.weightsFile.endsWith("adapter_model.bin")).toBe(true);
    expect(r.adapter.modules.size).toBe(2);
  });

  it("python is available for the reference", () => {
    expect(runPython("print(1)").trim()).toBe("1");
  });
});
