/**
 * The model zoo through the ONNX exporter: architectures it cannot take are refused before any tracing, in one line
 * naming the architecture and what is unsupported (no torch report, no ANSI colour codes, nothing written); causal LMs
 * export in both modes and run in onnxruntime-node with PyTorch + PEFT's logits (adapter on, and no adapter = the
 * base's), and generate PEFT generate's greedy tokens (zoo-export-cases.ts). Mixtral's default expert kernel has no
 * ONNX conversion (the exporter switches it). The other half of the causal zoo is in zoo-export-2.test.ts, so vitest's
 * two workers export side by side; gpt2, llama, qwen2, mistral and roberta are also in sdk/test/runtime and
 * sdk/test/generation.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../cli/cli-fixtures.js";
import { tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { checkExported, makeZoo, type Made } from "./zoo-export-cases.js";

/** Refused architectures and what the one line must say (the exporter's ExportError, before any tracing). */
const REFUSED: Readonly<Record<string, RegExp>> = {
  t5: /^ONNX export of t5 \(T5ForConditionalGeneration\): encoder-decoder \(seq2seq\) models are not supported/,
  bart: /^ONNX export of bart \(BartForConditionalGeneration\): encoder-decoder \(seq2seq\) models are not supported/,
  vit: /^ONNX export of vit \(ViTForImageClassification\): the exported graph takes token ids \(input_ids\), and this model reads pixel_values/,
};
/** The one refusal also sent through the CLI (a sidecar start each): what the user sees. */
const CLI_REFUSED = "t5";
const EXPORTED = ["mixtral", "qwen3", "gemma", "gemma2", "phi", "phi3", "gpt_neox"] as const;

describe("model zoo through the ONNX exporter", () => {
  const tmp = tempDir("loraport-zoo-export-");
  let made: Record<string, Made> = {};
  beforeAll(() => {
    made = makeZoo(tmp.dir, Object.keys(REFUSED), EXPORTED, { failure: true, timeoutMs: 300_000 });
  }, limit(330_000));
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

  it.each(EXPORTED)("%s: adapter-inputs and merged exports run in onnxruntime-node with PEFT's logits (and the base's without an adapter); greedy generation gives PEFT's tokens", async (arch) => {
    await checkExported(arch, made[arch]!, tmp.dir);
  }, limit(120_000));
});
