/**
 * `loraport merge --to gguf` (and `mergeToGguf`): the adapter merged into the HF base and streamed into a base GGUF in
 * one step. The real consumer, node-llama-cpp 3.21.1 (CPU), must give transformers + PEFT's greedy tokens (computed in
 * the same run by the fixture, which reuses the GGUF test's base and adapter initialisation) for a plain adapter, a
 * loralib checkpoint of it, and DoRA + a trained modules_to_save lm_head (what a GGUF LoRA cannot carry), with logits
 * within the GGUF tests' 1e-3. The one-step file holds the same tensors as the documented two-step path (merge, then
 * convert). Unsupported architectures, outputs that are inputs and bad flags are refused before anything is written.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { FileMissingError, OutputIsInputError, UnsupportedFeatureError } from "../../src/errors.js";
import { mergeToGguf } from "../../src/adapter/index.js"; // what src/index.ts re-exports
import { mergeModel } from "../../src/adapter/merge-model.js";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { registerConvert } from "../../src/cli/commands/convert.js";
import { registerMerge } from "../../src/cli/commands/merge.js";
import { readGguf } from "../../src/formats/gguf/index.js";
import type { ProgressEvent } from "../../src/progress.js";
import { runCli } from "../helpers/cli.js";
import { PYTHON, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { LOGIT_TOL, llamaGreedy, type PeftReference } from "./llama-greedy.js";

const FIXTURE = resolve(import.meta.dirname, "fixtures/merge_gguf_reference.py");

interface Reference {
  prompt: number[];
  baseTokens: number[];
  cases: Record<"plain" | "dora-mts", PeftReference & { tokens: number[]; margin: number }>;
}

const work = tempDir("loraport-merge-gguf-");
const p = (...parts: string[]) => join(work.dir, ...parts);
const out = (name: string) => p("out", name);
let ref: Reference;
let llama: Llama;

beforeAll(async () => {
  const stdout = execFileSync(PYTHON, [FIXTURE, work.dir], {
    encoding: "utf8", timeout: limit(300_000), maxBuffer: 256 << 20, stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error", HF_HUB_OFFLINE: "1" },
  });
  ref = JSON.parse(stdout.trim().split("\n").pop()!) as Reference;
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  mkdirSync(p("out"));
}, limit(400_000));

afterAll(async () => {
  await llama?.dispose();
  work.cleanup();
});

async function run(file: string, expected?: PeftReference): Promise<{ tokens: number[]; maxLogitDiff: number }> {
  const model = await llama.loadModel({ modelPath: file });
  try {
    return await llamaGreedy(model, ref.prompt, ref.cases.plain.tokens.length, expected);
  } finally {
    await model.dispose();
  }
}

describe("merge --to gguf: node-llama-cpp runs the merged base GGUF as transformers + PEFT runs the adapter", () => {
  it(`plain adapter (CLI, --json): same greedy tokens, logits within ${LOGIT_TOL}; no temp file left`, async () => {
    const file = out("plain.gguf");
    const printed = await runCli([registerMerge], ["merge", "--base", p("base-llama"), "--adapter", p("plain"), "--to", "gguf", "--out", file, "--json"]);
    const j = JSON.parse(printed) as Record<string, unknown>;
    expect(j).toMatchObject({ command: "merge", to: "gguf", out: file, architecture: "llama", outtype: "F32", modules: 14, tensors: 21, replaced: [], unused: [], files: [{ path: file }] });
    const want = ref.cases.plain;
    const got = await run(file, want);
    expect(got.tokens).toEqual(want.tokens);
    expect(got.maxLogitDiff).toBeLessThan(LOGIT_TOL);
    expect(got.tokens).not.toEqual(ref.baseTokens);
    expect(readdirSync(p("out"))).toEqual(["plain.gguf"]);
    console.log(`plain: ${got.tokens.length} tokens equal, max centred logit diff ${got.maxLogitDiff.toExponential(2)}, PEFT's smallest top-2 margin ${want.margin.toFixed(4)}`);
  });

  it("DoRA + a trained modules_to_save lm_head (API, with progress): PEFT's tokens and logits; without the saved head the tokens differ", async () => {
    const { adapter } = await readPeftAdapter(p("dora-mts"));
    const events: ProgressEvent[] = [];
    const report = await mergeToGguf(p("base-llama"), adapter, out("dora-mts.gguf"), { onProgress: (e) => events.push(e) });
    expect(report.merged).toHaveLength(8);
    expect(report.merged.every((m) => m.dora)).toBe(true);
    expect(report.replaced).toEqual(["lm_head.weight"]);
    expect(events[0]).toMatchObject({ phase: "merge", done: 0, total: 21, unit: "tensors" });
    expect(events.map((e) => e.done)).toEqual([...Array(22).keys()]);
    const want = ref.cases["dora-mts"];
    const got = await run(out("dora-mts.gguf"), want);
    expect(got.tokens).toEqual(want.tokens);
    expect(got.maxLogitDiff).toBeLessThan(LOGIT_TOL);
    console.log(`dora-mts: ${got.tokens.length} tokens equal, max centred logit diff ${got.maxLogitDiff.toExponential(2)}, PEFT's smallest top-2 margin ${want.margin.toFixed(4)}`);
    // The saved head matters: the same DoRA merge without it gives other tokens.
    await mergeToGguf(p("base-llama"), { ...adapter, extraTensors: new Map() }, out("dora-no-head.gguf"));
    expect((await run(out("dora-no-head.gguf"))).tokens).not.toEqual(want.tokens);
  });

  it("the one-step file holds the same tensors, bit for bit, as merge to a folder then convert --to gguf", async () => {
    await mergeModel(p("base-llama"), (await readPeftAdapter(p("dora-mts"))).adapter, p("dora-mts-merged"));
    await runCli([registerConvert], ["convert", p("dora-mts-merged"), "--to", "gguf", "--out", p("two-step.gguf")]);
    const one = await readGguf(out("dora-mts.gguf"));
    const two = await readGguf(p("two-step.gguf"));
    expect([...one.tensors.keys()]).toEqual([...two.tensors.keys()]);
    for (const [name, t] of one.tensors) expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(two.tensors.get(name)!.data.buffer, two.tensors.get(name)!.data.byteOffset, two.tensors.get(name)!.data.byteLength)), name).toBe(true);
    const meta = (h: typeof one.header) => [...h.metadata].filter(([k]) => k !== "general.name");
    expect(meta(one.header)).toEqual(meta(two.header));
  });

  it("a loralib checkpoint (--r 8 --alpha 16) merges to the plain adapter's tokens", async () => {
    await runCli([registerMerge], ["merge", "--base", p("base-llama"), "--adapter", p("plain-loralib.pt"), "--r", "8", "--alpha", "16", "--to", "gguf", "--out", out("loralib.gguf")]);
    expect((await run(out("loralib.gguf"))).tokens).toEqual(ref.cases.plain.tokens);
  });

  it("--dtype f16: matrices F16, norms F32; llama.cpp gives the plain adapter's tokens", async () => {
    const printed = await runCli([registerMerge], ["merge", "--base", p("base-llama"), "--adapter", p("plain"), "--to", "gguf", "--dtype", "f16", "--out", out("plain-f16.gguf")]);
    expect(printed).toMatch(/merged 14 modules into 21 tensors in .* s → .*plain-f16\.gguf \(llama base GGUF, F16\)/);
    const { header } = await readGguf(out("plain-f16.gguf"));
    for (const t of header.tensors) expect(t.typeInfo.name, t.name).toBe(t.ne.length === 1 ? "F32" : "F16");
    expect((await run(out("plain-f16.gguf"))).tokens).toEqual(ref.cases.plain.tokens);
  });
});

describe("merge --to gguf refuses before anything is written", () => {
  const merge = (...args: string[]) => runCli([registerMerge], ["merge", "--to", "gguf", ...args]);

  it("an architecture the GGUF writer does not support: one typed line naming it and the supported ones, before the adapter is read", async () => {
    mkdirSync(p("gpt2"));
    writeFileSync(p("gpt2", "config.json"), JSON.stringify({ model_type: "gpt2", n_embd: 64 }));
    const e = await merge("--base", p("gpt2"), "--adapter", p("no-such-adapter"), "--out", out("gpt2.gguf")).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UnsupportedFeatureError);
    expect((e as Error).message).toMatch(/^model_type: .*config\.json: architecture 'gpt2' is not supported for GGUF \(supported: llama, mistral, qwen2\)$/);
    expect((e as Error).message).not.toContain("\n");
    expect(existsSync(out("gpt2.gguf"))).toBe(false);
  });

  it("a base without tokenizer.json: FileMissingError naming it, nothing merged or written", async () => {
    mkdirSync(p("no-tok"));
    for (const f of ["config.json", "model.safetensors"]) copyFileSync(p("base-llama", f), p("no-tok", f));
    await expect(merge("--base", p("no-tok"), "--adapter", p("plain"), "--out", out("no-tok.gguf"))).rejects.toThrow(FileMissingError);
    expect(existsSync(out("no-tok.gguf"))).toBe(false);
  });

  it("outputs that are inputs, existing outputs, bad flags", async () => {
    await expect(merge("--base", p("base-llama"), "--adapter", p("plain-loralib.pt"), "--r", "8", "--alpha", "16", "--out", p("plain-loralib.pt"))).rejects.toThrow(OutputIsInputError);
    await expect(merge("--base", p("base-llama"), "--adapter", p("plain"), "--out", p("base-llama", "model.gguf"))).rejects.toThrow(/--out .*model\.gguf lies inside --base/);
    await expect(merge("--base", p("base-llama"), "--adapter", p("plain"), "--out", out("plain.gguf"))).rejects.toThrow(/--out .*plain\.gguf already exists; pass --force/);
    await expect(merge("--base", p("base-llama"), "--adapter", p("plain"), "--out", out("x.gguf"), "--unmerge")).rejects.toThrow(/--unmerge .* does not combine with --to gguf/);
    await expect(merge("--base", p("base-llama", "model.safetensors"), "--adapter", p("plain"), "--out", out("x.gguf"))).rejects.toThrow(/needs a Hugging Face model folder/);
    await expect(runCli([registerMerge], ["merge", "--to", "onnx", "--base", p("base-llama"), "--adapter", p("plain"), "--out", out("x.onnx")])).rejects.toThrow(/--to onnx: unknown target \(expected one of safetensors, gguf\)/);
    expect(readdirSync(p("out")).filter((f) => f.startsWith("x.") || f.includes(".tmp"))).toEqual([]);
  });

  it("merge --help names --to gguf and the architectures", () => {
    const program = new Command("loraport");
    registerMerge(program);
    const help = program.commands.find((c) => c.name() === "merge")!.helpInformation();
    expect(help).toMatch(/--to <target>[\s\S]*gguf[\s\S]*llama, mistral, qwen2/);
  });
});
