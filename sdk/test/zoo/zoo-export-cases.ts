/**
 * What zoo-export*.test.ts share: the fixture process (make_zoo_export.py builds every base, adapter, PEFT reference
 * and both exports of a file's architectures in one Python process) and the check of one exported causal LM against
 * PyTorch + PEFT. Two test files split the zoo so vitest's two workers export side by side.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { generateBatch } from "../../src/generation/generate.js";
import { LoraModel } from "../../src/runtime/lora-model.js";
import { runPython } from "../helpers/python.js";

// lora-model.test.ts's ONNX Runtime vs PyTorch tolerance.
export const TOL = 1e-4;

export interface Refusal {
  seconds?: number;
  type?: string;
  message?: string;
  exported?: boolean;
}

export interface Made {
  base: string;
  "adapter-inputs"?: Refusal;
  merged?: Refusal;
  adapter?: string;
  ids?: number[][];
  logits?: number[];
  base_logits?: number[];
  greedy?: number[][];
  /** Sliding-window models: a prompt longer than the window, its PEFT logits, and how much the window changes them. */
  long_ids?: number[][];
  long_logits?: number[];
  window_effect?: number;
  export_seconds?: Record<string, number>;
}

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/make_zoo_export.py"), "utf8");
const SIDECAR = join(import.meta.dirname, "../../../sidecar");

/** Run the fixture process: `refused` get bases only (the exporter's refusal recorded), `exported` everything. */
export function makeZoo(dir: string, refused: readonly string[], exported: readonly string[], options: { failure?: boolean; timeoutMs: number }): Record<string, Made> {
  const script = SCRIPT.replace('sys.path.insert(0, "sidecar")', `sys.path.insert(0, ${JSON.stringify(SIDECAR)})`);
  const args = [dir, refused.join(","), exported.join(","), ...(options.failure ? ["--failure"] : [])];
  const lines = runPython(script, args, { timeoutMs: options.timeoutMs }).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!) as Record<string, Made>;
}

/** The worst |got - want| and where it is: [row, position, vocab index] of a [rows, seq, vocab] logits tensor. */
export function worst(got: Float32Array, want: readonly number[], rows: number, seq: number): { err: number; at: string } {
  expect(got.length).toBe(want.length);
  let err = 0;
  let at = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (d > err || Number.isNaN(d)) [err, at] = [Number.isNaN(d) ? Number.POSITIVE_INFINITY : d, i];
  }
  const vocab = got.length / (rows * seq);
  return { err, at: `[${Math.floor(at / (seq * vocab))}, ${Math.floor(at / vocab) % seq}, ${at % vocab}]` };
}

/**
 * One exported architecture against PyTorch + PEFT: the adapter-inputs export with the adapter (PEFT's logits) and
 * with none (the base's logits), greedy KV-cache generation (PEFT generate's tokens) on that same export, and the
 * merged export (PEFT's logits). Logs export seconds and each max abs error with its place.
 */
export async function checkExported(arch: string, m: Made, dir: string): Promise<void> {
  for (const mode of ["adapter-inputs", "merged"] as const) expect(m[mode]?.message, `${arch} ${mode} refused`).toBeUndefined();
  const ids = m.ids!;
  const [rows, seq] = [ids.length, ids[0]!.length];
  const { adapter } = await readPeftAdapter(m.adapter!);
  // The adapter moves the logits far beyond the tolerance, so the checks below can fail.
  expect(worst(Float32Array.from(m.logits!), m.base_logits!, rows, seq).err).toBeGreaterThan(100 * TOL);
  const ai = await LoraModel.load(join(dir, arch, "adapter-inputs"));
  let tokens: (readonly number[])[];
  let on: { err: number; at: string };
  let off: { err: number; at: string };
  let long: { err: number; at: string } | undefined;
  try {
    await ai.registerAdapter("a", adapter);
    on = worst((await ai.run({ inputIds: ids }, { adapter: "a" })).logits.data as Float32Array, m.logits!, rows, seq);
    off = worst((await ai.run({ inputIds: ids }, { adapter: null })).logits.data as Float32Array, m.base_logits!, rows, seq);
    if (m.long_ids) {
      // The window changes these logits far beyond the tolerance, so a graph that ignored it would fail here.
      expect(m.window_effect!).toBeGreaterThan(100 * TOL);
      long = worst((await ai.run({ inputIds: m.long_ids }, { adapter: "a" })).logits.data as Float32Array, m.long_logits!, m.long_ids.length, m.long_ids[0]!.length);
    }
    // KV-cache generation (both prompts of one length: no padding), EOS ignored as in the reference.
    tokens = (await generateBatch(ai, ids, { adapter: "a", maxNewTokens: m.greedy![0]!.length, temperature: 0, ignoreEos: true }, () => undefined)).map((r) => r.tokens);
  } finally {
    await ai.close();
  }
  const merged = await LoraModel.load(join(dir, arch, "merged"));
  let mergedErr: { err: number; at: string };
  try {
    mergedErr = worst((await merged.run({ inputIds: ids })).logits.data as Float32Array, m.logits!, rows, seq);
  } finally {
    await merged.close();
  }
  const same = tokens.every((t, i) => t.join() === m.greedy![i]!.join());
  console.log(`zoo ${arch}: export s ${JSON.stringify(m.export_seconds)}; max abs vs PEFT: adapter-inputs ${on.err.toExponential(2)} at ${on.at}, ` +
    `no adapter ${off.err.toExponential(2)} at ${off.at}, merged ${mergedErr.err.toExponential(2)} at ${mergedErr.at}` +
    `${long ? `, ${m.long_ids![0]!.length} tokens past the sliding window ${long.err.toExponential(2)} at ${long.at} (window moves them ${m.window_effect!.toExponential(2)})` : ""}; generate ${same ? "same" : "DIFFERENT"} ${m.greedy![0]!.length} tokens`);
  expect(on.err, `${arch} adapter-inputs, adapter on`).toBeLessThanOrEqual(TOL);
  expect(off.err, `${arch} adapter-inputs, no adapter`).toBeLessThanOrEqual(TOL);
  if (long) expect(long.err, `${arch} past the sliding window`).toBeLessThanOrEqual(TOL);
  expect(tokens, `${arch} greedy tokens`).toEqual(m.greedy);
  expect(mergedErr.err, `${arch} merged`).toBeLessThanOrEqual(TOL);
}
