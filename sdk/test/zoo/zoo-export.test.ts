/**
 * The model zoo through the ONNX exporter: architectures it cannot take are refused before any tracing, in one line
 * naming the architecture and what is unsupported (no torch report, no ANSI colour codes, nothing written); Mixtral
 * (mixture of experts, whose default expert kernel has no ONNX conversion) exports in both modes and runs in
 * onnxruntime-node with PyTorch + PEFT's logits, and generates PEFT generate's greedy tokens. Exports cost 20–60 s each, so the other causal LMs of the zoo are not
 * exported here (gpt2, llama, qwen2, mistral and roberta are, in sdk/test/runtime and sdk/test/generation).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { generateBatch } from "../../src/generation/generate.js";
import { LoraModel } from "../../src/runtime/lora-model.js";
import { cli } from "../cli/cli-fixtures.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/make_zoo_export.py"), "utf8");
// lora-model.test.ts's ONNX Runtime vs PyTorch tolerance.
const TOL = 1e-4;
/** Refused architectures and what the one line must say (the exporter's ExportError, before any tracing). */
const REFUSED: Readonly<Record<string, RegExp>> = {
  t5: /^ONNX export of t5 \(T5ForConditionalGeneration\): encoder-decoder \(seq2seq\) models are not supported/,
  bart: /^ONNX export of bart \(BartForConditionalGeneration\): encoder-decoder \(seq2seq\) models are not supported/,
  vit: /^ONNX export of vit \(ViTForImageClassification\): the exported graph takes token ids \(input_ids\), and this model reads pixel_values/,
};
/** The one refusal also sent through the CLI (a sidecar start each): what the user sees. */
const CLI_REFUSED = "t5";
const EXPORTED = ["mixtral"] as const;

interface Refusal {
  seconds?: number;
  type?: string;
  message?: string;
  exported?: boolean;
}

interface Made {
  base: string;
  "adapter-inputs"?: Refusal;
  merged?: Refusal;
  adapter?: string;
  ids?: number[][];
  logits?: number[];
  base_logits?: number[];
  greedy?: number[][];
  export_seconds?: Record<string, number>;
}

function maxAbs(got: Float32Array, want: readonly number[]): number {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  return worst;
}

describe("model zoo through the ONNX exporter", () => {
  const tmp = tempDir("loraport-zoo-export-");
  let made: Record<string, Made> = {};
  beforeAll(() => {
    const script = SCRIPT.replace('sys.path.insert(0, "sidecar")', `sys.path.insert(0, ${JSON.stringify(join(import.meta.dirname, "../../../sidecar"))})`);
    made = runPythonJson<Record<string, Made>>(script, [tmp.dir, Object.keys(REFUSED).join(","), EXPORTED.join(",")]);
    for (const a of EXPORTED) console.log(`zoo ${a}: export seconds ${JSON.stringify(made[a]!.export_seconds)}`);
  }, limit(300_000));
  afterAll(() => tmp.cleanup());

  it.each(Object.keys(REFUSED))("%s: both modes refused up front in one line naming the architecture, nothing written", (arch) => {
    for (const mode of ["adapter-inputs", "merged"] as const) {
      const r = made[arch]![mode]!;
      expect(r.exported, `${arch} ${mode}`).toBeUndefined();
      expect(r.type).toBe("ExportError");
      expect(r.message).toMatch(REFUSED[arch]!);
      expect(r.message!.split("\n")).toHaveLength(1);
      console.log(`zoo ${arch} ${mode}: refused after ${r.seconds} s (load included): ${r.message}`);
      expect(existsSync(join(tmp.dir, arch, `onnx-${mode}`))).toBe(false);
    }
  });

  it("a torch.onnx failure reaches the user as one line naming the architecture and the cause, colour codes removed", () => {
    const f = made["_failure"] as unknown as { raw_has_ansi: boolean; raw_lines: number; message: string; type: string };
    // torch's own report has colour codes and many lines, so the checks below can fail.
    expect(f.raw_has_ansi).toBe(true);
    expect(f.raw_lines).toBeGreaterThan(3);
    expect(f.type).toBe("ExportError");
    expect(f.message).toMatch(/^ONNX export of llama \(LlamaForCausalLM\) failed: DispatchError: No ONNX function found for .*loraport_zoo\.opaque/);
    expect(f.message).not.toMatch(/\x1b|\n/);
  });

  it(`${CLI_REFUSED} through the CLI: the same line, no torch report or colour codes, nothing written`, async () => {
    const out = join(tmp.dir, CLI_REFUSED, "onnx");
    const r = await cli(["export", "--base", made[CLI_REFUSED]!.base, "--out", out]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^loraport: .*${REFUSED[CLI_REFUSED]!.source.slice(1)}`));
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\x1b\[|Traceback|torch\.export|Exception summary/);
    expect(r.stderr).not.toMatch(/loraport_sidecar\.|ExportError:/);
    expect(existsSync(out)).toBe(false);
  }, limit(120_000));

  it.each(EXPORTED)("%s: adapter-inputs and merged exports run in onnxruntime-node with PEFT's logits; greedy generation gives PEFT's tokens", async (arch) => {
    const m = made[arch]!;
    const { adapter } = await readPeftAdapter(m.adapter!);
    // The adapter moves the logits far beyond the tolerance, so the checks below can fail.
    expect(maxAbs(Float32Array.from(m.logits!), m.base_logits!)).toBeGreaterThan(100 * TOL);
    const ai = await LoraModel.load(join(tmp.dir, arch, "adapter-inputs"));
    try {
      await ai.registerAdapter("a", adapter);
      const withAdapter = maxAbs((await ai.run({ inputIds: m.ids! }, { adapter: "a" })).logits.data as Float32Array, m.logits!);
      const base = maxAbs((await ai.run({ inputIds: m.ids! }, { adapter: null })).logits.data as Float32Array, m.base_logits!);
      console.log(`zoo ${arch} adapter-inputs vs PEFT: max abs ${withAdapter.toExponential(2)} (base ${base.toExponential(2)})`);
      expect(withAdapter).toBeLessThanOrEqual(TOL);
      expect(base).toBeLessThanOrEqual(TOL);
      // KV-cache generation: transformers + PEFT generate's greedy tokens (both prompts of one length: no padding).
      const tokens = (await generateBatch(ai, m.ids!, { adapter: "a", maxNewTokens: m.greedy![0]!.length, temperature: 0, ignoreEos: true }, () => undefined)).map((r) => r.tokens);
      expect(tokens).toEqual(m.greedy);
    } finally {
      await ai.close();
    }
    const merged = await LoraModel.load(join(tmp.dir, arch, "merged"));
    try {
      const e = maxAbs((await merged.run({ inputIds: m.ids! })).logits.data as Float32Array, m.logits!);
      console.log(`zoo ${arch} merged vs PEFT: max abs ${e.toExponential(2)}`);
      expect(e).toBeLessThanOrEqual(TOL);
    } finally {
      await merged.close();
    }
  }, limit(120_000));
});
