/**
 * Merge → unmerge against PEFT's own in-session merge_adapter() → unmerge_adapter(), for what a plain W ± ΔW does not
 * cover. DoRA (nn.Linear llama q_proj/v_proj, transformers Conv1D gpt2 c_attn): loraport merge records the norms it divided
 * by (src/adapter/dora-norms.ts), transformers loads the merged folder with the record inside as if it were not there,
 * and unmerge gives PEFT's unmerged weights and the original base back; without the record (PEFT's own merged folder),
 * with another adapter, or with merged weights changed since, unmerge is refused. lora_bias (Linear roberta query,
 * Conv1D gpt2 c_attn): merge and unmerge move the base bias as PEFT does; inspect counts lora_B.bias; the commands that
 * cannot carry it refuse in one typed line.
 */
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LoraAdapter } from "../../src/adapter/adapter.js";
import { combineAdapters } from "../../src/adapter/combine.js";
import { DORA_NORMS_IN_FOLDER } from "../../src/adapter/dora-norms.js";
import { adapterFactors } from "../../src/adapter/factors.js";
import { mergeModel } from "../../src/adapter/merge-model.js";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { inspectAdapter } from "../../src/cli/commands/inspect-adapter.js";
import { registerMerge } from "../../src/cli/commands/merge.js";
import { UnsupportedFeatureError } from "../../src/errors.js";
import { openSafetensorsModel, readSafetensors, writeSafetensors } from "../../src/formats/safetensors/index.js";
import { toFloat32 } from "../../src/tensor/index.js";
import { runCli } from "../helpers/cli.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/unmerge_parity.py"), "utf8").replace('sys.path.insert(0, "sidecar")', `sys.path.insert(0, ${JSON.stringify(join(import.meta.dirname, "../../../sidecar"))})`);
const CASES = ["dora_llama", "dora_gpt2", "bias_roberta", "bias_gpt2"] as const;
const DORA = ["dora_llama", "dora_gpt2"] as const;
const TOL = 1e-6;

interface Made {
  modules: string[];
  tensors: string[];
  lora_params: number;
  peft_merge_vs_adapted: number;
  peft_unmerged_vs_original: number;
  merge_moved: number;
}

/** Max |a − b| over the tensors of `ref` (a file or model folder), read from `ours` under the same names. */
async function maxDiff(ours: string, ref: string, names?: readonly string[]): Promise<number> {
  const a = await openSafetensorsModel(ours);
  const b = await openSafetensorsModel(ref);
  try {
    let worst = 0;
    for (const n of names ?? b.names) {
      const x = toFloat32(await a.read(n));
      const y = toFloat32(await b.read(n));
      expect(x.length, n).toBe(y.length);
      for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
    }
    return worst;
  } finally {
    await a.close();
    await b.close();
  }
}

async function refusal(p: Promise<unknown>, key = "use_dora"): Promise<UnsupportedFeatureError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(UnsupportedFeatureError);
  expect((err as UnsupportedFeatureError).key).toBe(key);
  expect((err as Error).message.split("\n")).toHaveLength(1);
  return err as UnsupportedFeatureError;
}

describe("merge → unmerge of DoRA and lora_bias adapters vs PEFT merge_adapter → unmerge_adapter", () => {
  const tmp = tempDir("loraport-unmerge-parity-");
  let made: Record<string, Made> = {};
  let loaded: Record<string, { info: Record<string, string[]>; logits_vs_peft: number }> = {};
  const adapters = new Map<string, LoraAdapter>();
  const dir = (c: string, ...p: string[]) => join(tmp.dir, c, ...p);

  beforeAll(async () => {
    made = runPythonJson<Record<string, Made>>(SCRIPT, ["make", tmp.dir]);
    for (const c of CASES) {
      adapters.set(c, (await readPeftAdapter(dir(c, "adapter"))).adapter);
      await mergeModel(dir(c, "base"), adapters.get(c)!, dir(c, "merged"), { safe: true });
    }
    loaded = runPythonJson(SCRIPT, ["check", tmp.dir]);
  }, limit(240_000));
  afterAll(() => tmp.cleanup());

  it("PEFT's own round trip is the reference: the merge moves every adapted tensor, PEFT's unmerge restores them", () => {
    expect(Object.keys(made).sort()).toEqual([...CASES].sort());
    for (const c of CASES) {
      expect(made[c]!.merge_moved, c).toBeGreaterThan(1e-3);
      expect(made[c]!.peft_unmerged_vs_original, c).toBeLessThan(1e-6);
    }
    // lora_bias cases compare the base biases too
    expect(made["bias_roberta"]!.tensors.filter((t) => t.endsWith(".bias")).length).toBe(2);
  });

  it.each(CASES)("%s: merge equals PEFT merge_adapter; transformers loads the merged folder with PEFT's logits", async (c) => {
    const worst = await maxDiff(dir(c, "merged"), dir(c, "peft_merged_weights.safetensors"), made[c]!.tensors);
    const { info, logits_vs_peft } = loaded[c]!;
    console.log(`${c}: merge max abs vs PEFT ${worst.toExponential(2)} over ${made[c]!.tensors.length} tensors; transformers on the merged folder: logits vs PEFT merged ${logits_vs_peft.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(TOL);
    for (const k of ["missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"]) expect(info[k] ?? [], k).toEqual([]);
    expect(logits_vs_peft).toBeLessThanOrEqual(1e-5);
    // The DoRA norms record: one [out] tensor per merged DoRA weight; none for other adapters.
    const recorded = existsSync(dir(c, "merged", DORA_NORMS_IN_FOLDER));
    expect(recorded).toBe(c.startsWith("dora"));
    if (recorded) {
      const record = await readSafetensors(dir(c, "merged", DORA_NORMS_IN_FOLDER));
      expect([...record.tensors.keys()].sort()).toEqual(made[c]!.modules.map((m) => `${m}.weight`).sort());
    }
  });

  it.each(CASES)("%s: unmerge gives PEFT's unmerged tensors and the original base back; the output has no record", async (c) => {
    const report = await mergeModel(dir(c, "merged"), adapters.get(c)!, dir(c, "unmerged"), { unmerge: true, safe: true });
    expect(report.merged.length).toBe(made[c]!.modules.length);
    expect(report.doraNorms).toBeUndefined();
    const vsPeft = await maxDiff(dir(c, "unmerged"), dir(c, "peft_unmerged_weights.safetensors"), made[c]!.tensors);
    const vsBase = await maxDiff(dir(c, "unmerged"), dir(c, "base"));
    console.log(`${c}: unmerge max abs vs PEFT unmerge ${vsPeft.toExponential(2)}, vs the original base ${vsBase.toExponential(2)} (PEFT's own: ${made[c]!.peft_unmerged_vs_original.toExponential(2)})`);
    expect(vsPeft).toBeLessThanOrEqual(TOL);
    expect(vsBase).toBeLessThanOrEqual(TOL);
    expect(readdirSync(dir(c, "unmerged")).sort()).toEqual(readdirSync(dir(c, "base")).sort());
  });

  it("DoRA: a single-file merge records beside the file (<out>.dora-norms) and unmerges from it", async () => {
    const adapter = adapters.get("dora_gpt2")!;
    const out = dir("dora_gpt2", "merged-file.safetensors");
    const report = await mergeModel(dir("dora_gpt2", "base", "model.safetensors"), adapter, out);
    expect(report.doraNorms).toBe(`${out}.dora-norms`);
    expect(report.files).toContain(`${out}.dora-norms`);
    await mergeModel(out, adapter, dir("dora_gpt2", "unmerged-file.safetensors"), { unmerge: true });
    expect(await maxDiff(dir("dora_gpt2", "unmerged-file.safetensors"), dir("dora_gpt2", "base"))).toBeLessThanOrEqual(TOL);
  });

  it("DoRA, CLI: loraport merge says where the norms are kept; merge --unmerge uses them", async () => {
    const c = "dora_llama";
    const logs = await runCli([registerMerge], ["merge", "--base", dir(c, "base"), "--adapter", dir(c, "adapter"), "--out", dir(c, "cli-merged")]);
    expect(logs).toContain(`DoRA norms the merge divided by, kept for --unmerge: ${join(dir(c, "cli-merged"), DORA_NORMS_IN_FOLDER)}`);
    const back = await runCli([registerMerge], ["merge", "--unmerge", "--base", dir(c, "cli-merged"), "--adapter", dir(c, "adapter"), "--out", dir(c, "cli-unmerged"), "--json"]);
    expect(JSON.parse(back).doraNorms).toBeUndefined();
    expect(await maxDiff(dir(c, "cli-unmerged"), dir(c, "base"))).toBeLessThanOrEqual(TOL);
  });

  it("DoRA: a plain LoRA merged on top (other modules) and unmerged again carries the record along; the DoRA unmerge still gives the base", async () => {
    const c = "dora_llama";
    const dora = adapters.get(c)!;
    // Plain LoRA on o_proj (same [32, 32] shape as q_proj): the DoRA q_proj factors, magnitudes dropped, renamed.
    const plain: LoraAdapter = {
      ...dora,
      config: { ...dora.config, use_dora: false },
      modules: new Map([...dora.modules].filter(([n]) => n.endsWith("q_proj")).map(([n, m]) => [n.replace("q_proj", "o_proj"), { kind: m.kind, A: m.A, B: m.B }])),
    };
    const stacked = await mergeModel(dir(c, "merged"), plain, dir(c, "stacked"));
    expect(stacked.doraNorms).toBe(join(dir(c, "stacked"), DORA_NORMS_IN_FOLDER));
    expect(await maxDiff(dir(c, "stacked"), dir(c, "merged"))).toBeGreaterThan(1e-3);
    await mergeModel(dir(c, "stacked"), plain, dir(c, "unstacked"), { unmerge: true });
    await mergeModel(dir(c, "unstacked"), dora, dir(c, "base-again"), { unmerge: true });
    expect(await maxDiff(dir(c, "base-again"), dir(c, "base"))).toBeLessThanOrEqual(TOL);
    // Straight from the stacked folder the DoRA weights are untouched too (the LoRA is on other modules): still exact.
    const direct = await mergeModel(dir(c, "stacked"), dora, dir(c, "direct"), { unmerge: true });
    expect(direct.doraNorms).toBeUndefined();
  });

  it("DoRA: without the record (PEFT's own merged folder) unmerge is refused naming the file it needs; nothing written", async () => {
    const err = await refusal(mergeModel(dir("dora_llama", "peft_merged"), adapters.get("dora_llama")!, dir("dora_llama", "x"), { unmerge: true }));
    expect(err.message).toContain(join(dir("dora_llama", "peft_merged"), DORA_NORMS_IN_FOLDER));
    expect(err.message).toContain("is missing");
    expect(existsSync(dir("dora_llama", "x"))).toBe(false);
  });

  it("DoRA: a record written for another adapter is refused", async () => {
    const a = adapters.get("dora_llama")!;
    const [name, m] = [...a.modules][0]!;
    const mag = toFloat32(m.magnitude!, true);
    mag[0] = mag[0]! * 1.5;
    const other: LoraAdapter = { ...a, modules: new Map([...a.modules, [name, { ...m, magnitude: { dtype: "F32", shape: m.magnitude!.shape, data: mag } }]]) };
    const err = await refusal(mergeModel(dir("dora_llama", "merged"), other, dir("dora_llama", "y"), { unmerge: true }));
    expect(err.message).toContain("different DoRA adapter");
    expect(existsSync(dir("dora_llama", "y"))).toBe(false);
  });

  it("DoRA: merged weights changed since the merge are refused, naming the tensor", async () => {
    cpSync(dir("dora_llama", "merged"), dir("dora_llama", "tampered"), { recursive: true });
    const file = dir("dora_llama", "tampered", "model.safetensors");
    const { tensors, metadata } = await readSafetensors(file);
    const key = `${made["dora_llama"]!.modules[1]}.weight`;
    const w = toFloat32(tensors.get(key)!, true);
    w[3] = w[3]! + 1e-3;
    tensors.set(key, { dtype: "F32", shape: tensors.get(key)!.shape, data: w });
    await writeSafetensors(file, tensors, metadata);
    const err = await refusal(mergeModel(dir("dora_llama", "tampered"), adapters.get("dora_llama")!, dir("dora_llama", "z"), { unmerge: true }));
    expect(err.message).toContain(`'${key}'`);
    expect(err.message).toContain("bytes changed");
    expect(existsSync(dir("dora_llama", "z"))).toBe(false);
  });

  it("lora_bias: inspect counts lora_B.bias as PEFT does; combine and the factor paths (serving, .onnx_adapter) refuse in one typed line", async () => {
    for (const c of ["bias_roberta", "bias_gpt2"]) {
      const seen = await inspectAdapter(dir(c, "adapter"));
      const json = seen!.json as { loraParams: number; loraBias: boolean; modules: { kind: string; loraBias: boolean }[] };
      expect(json.loraParams, c).toBe(made[c]!.lora_params);
      // lora_bias is named in the text (config line, `+bias` on each module's kind) and in --json.
      expect(json.loraBias, c).toBe(true);
      expect(json.modules.every((m) => m.loraBias), c).toBe(true);
      expect(seen!.text, c).toMatch(/, lora_bias, /);
      expect(seen!.text, c).toMatch(c === "bias_gpt2" ? /\sconv1d\+bias\s/ : /\slinear\+bias\s/);
    }
    const a = adapters.get("bias_roberta")!;
    for (const method of ["linear", "cat", "svd"] as const) {
      await refusal(Promise.resolve().then(() => combineAdapters([a, a], { method })), "lora_bias");
    }
    await refusal(Promise.resolve().then(() => adapterFactors(a)), "lora_bias");
    // With DoRA: PEFT's LoraConfig refuses the pair, so does loraport's config reader (every command reads through it).
    cpSync(dir("bias_roberta", "adapter"), dir("bias_roberta", "with-dora"), { recursive: true });
    const cfgFile = dir("bias_roberta", "with-dora", "adapter_config.json");
    writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, "utf8")), use_dora: true }));
    const err = await refusal(readPeftAdapter(dir("bias_roberta", "with-dora")), "lora_bias");
    expect(err.message).toContain(cfgFile);
  });
});
