/**
 * The real consumer: node-llama-cpp 3.21.1 (llama.cpp, CPU) runs loraport's base GGUF plus loraport's GGUF LoRA
 * adapters and must give transformers + PEFT's greedy tokens, computed in the same run by the fixture, for a plain
 * adapter, an rsLoRA adapter and a rank_pattern + alpha_pattern adapter (the two llama.cpp's own converter mis-scales),
 * with logits (centred on the top token, as llama.cpp reports probabilities) within 1e-3. Then GGUF → PEFT: PEFT loads
 * the folder loraport writes and gives the same tokens, and PEFT → GGUF again is byte-identical. qwen2 and mistral (written
 * as llama.cpp's `llama` architecture) run an rsLoRA + pattern adapter each.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, LlamaLogLevel, readGgufFileInfo, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { registerConvert } from "../../src/cli/commands/convert.js";
import { readGguf } from "../../src/formats/gguf/index.js";
import { mergeModel } from "../../src/adapter/merge-model.js";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { runCli } from "../helpers/cli.js";
import { pythonCommand, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { LOGIT_TOL, llamaGreedy, type PeftReference } from "./llama-greedy.js";

const FIXTURE = resolve(import.meta.dirname, "fixtures/gguf_reference.py");
const CASES = ["plain", "rslora", "patterns", "qwen2", "mistral"] as const;
const BASES = ["base-llama", "base-qwen2", "base-mistral"] as const;

interface Reference {
  prompt: number[];
  tokenized: Array<{ text: string; ids: number[] }>;
  cases: Record<(typeof CASES)[number] | "dora", { base: (typeof BASES)[number]; tokens: number[]; logprobs: number[][]; margin: number; droppedScalingTokens: number[] }>;
}

function python(args: string[]): string {
  return execFileSync(...pythonCommand([FIXTURE, ...args]), {
    encoding: "utf8", timeout: limit(300_000), maxBuffer: 256 << 20, stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error", HF_HUB_OFFLINE: "1" },
  });
}
const lastJson = <T>(out: string): T => JSON.parse(out.trim().split("\n").pop()!) as T;

const work = tempDir("loraport-gguf-");
const p = (...parts: string[]) => join(work.dir, ...parts);
let ref: Reference;
let llama: Llama;
const models = new Map<string, LlamaModel>();

beforeAll(async () => {
  ref = lastJson<Reference>(python([work.dir]));
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  for (const b of BASES) {
    await runCli([registerConvert], ["convert", p(b), "--to", "gguf", "--out", p(`${b}.gguf`)]);
    models.set(b, await llama.loadModel({ modelPath: p(`${b}.gguf`) }));
  }
  for (const c of CASES) await runCli([registerConvert], ["convert", p(c), "--to", "gguf", "--base", p(ref.cases[c].base), "--out", p(`${c}.gguf`)]);
}, limit(400_000));

afterAll(async () => {
  for (const m of models.values()) await m.dispose();
  await llama?.dispose();
  work.cleanup();
});

/** Greedy tokens from llama.cpp with the adapter, and the largest centred-logit difference to PyTorch's per step. */
function runAdapter(base: string | LlamaModel, file: string | undefined, expected?: PeftReference): Promise<{ tokens: number[]; maxLogitDiff: number }> {
  return llamaGreedy(typeof base === "string" ? models.get(base)! : base, ref.prompt, ref.cases.plain.tokens.length, expected, file);
}

describe("node-llama-cpp runs loraport's GGUF adapters as PEFT does", () => {
  for (const c of CASES) {
    it(`${c} (${c === "qwen2" || c === "mistral" ? `${c}, rsLoRA + patterns` : "llama"}): same greedy tokens as transformers + PEFT, logits within ${LOGIT_TOL}`, async () => {
      const want = ref.cases[c];
      const got = await runAdapter(want.base, p(`${c}.gguf`), want);
      expect(got.tokens).toEqual(want.tokens);
      expect(got.maxLogitDiff).toBeLessThan(LOGIT_TOL);
      console.log(`${c}: ${got.tokens.length} tokens equal, max centred logit diff ${got.maxLogitDiff.toExponential(2)}, PEFT's smallest top-2 margin ${want.margin.toFixed(4)}`);
    });
  }

  it("the rsLoRA and pattern cases discriminate: PEFT without the scaling llama.cpp's converter drops gives other tokens", () => {
    for (const c of CASES.filter((x) => x !== "plain")) expect(ref.cases[c].droppedScalingTokens, c).not.toEqual(ref.cases[c].tokens);
  });

  it("node-llama-cpp's own GGUF parser reads loraport's files: adapter keys, tensor names and shapes", async () => {
    const info = await readGgufFileInfo(p("patterns.gguf"), { readTensorInfo: true });
    const meta = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(meta.general!.type).toBe("adapter");
    expect(meta.general!.architecture).toBe("llama");
    expect((meta.adapter as { type: string; lora: { alpha: number } }).lora.alpha).toBe(16);
    const q = info.fullTensorInfo!.find((t) => t.name === "blk.0.attn_q.weight.lora_b")!;
    expect(q.dimensions.map(Number)).toEqual([4, 64]); // ne order: [r (rank_pattern q_proj: 4), out]
    const mine = (await readGguf(p("patterns.gguf"))).header.tensors.map((t) => [t.name, t.ne.join("x")]);
    expect(info.fullTensorInfo!.map((t) => [t.name, t.dimensions.join("x")])).toEqual(mine);
  });

  it("the base GGUF's vocabulary tokenizes as Hugging Face tokenizers does (special tokens, unicode) and detokenizes back", () => {
    const m = models.get("base-llama")!;
    for (const { text, ids } of ref.tokenized) {
      expect([...m.tokenize(text, true)], text).toEqual(ids);
      expect(m.detokenize(ids as Token[], true)).toBe(text);
    }
  });

  it.each(["f16", "bf16"])("--outtype %s (and --base given as the base .gguf): llama.cpp loads it and gives the plain adapter's greedy tokens", async (outtype) => {
    const file = p(`plain-${outtype}.gguf`);
    const out = await runCli([registerConvert], ["convert", p("plain"), "--to", "gguf", "--base", p("base-llama.gguf"), "--outtype", outtype, "--out", file, "--json"]);
    expect(JSON.parse(out)).toMatchObject({ command: "convert", to: "gguf", kind: "adapter", architecture: "llama", modules: 14, outtype: outtype.toUpperCase(), files: [{ path: file }] });
    const { header } = await readGguf(file);
    expect(new Set(header.tensors.map((t) => t.typeInfo.name))).toEqual(new Set([outtype.toUpperCase()]));
    expect((await runAdapter("base-llama", file)).tokens).toEqual(ref.cases.plain.tokens);
  });
});

describe("what GGUF LoRA cannot hold: merge instead", () => {
  it("DoRA is refused with 'merge instead'; merged by loraport and written as a base GGUF, llama.cpp gives PEFT's DoRA tokens", async () => {
    await expect(runCli([registerConvert], ["convert", p("dora"), "--to", "gguf", "--base", p("base-llama"), "--out", p("dora.gguf")]))
      .rejects.toThrow(/use_dora: DoRA magnitudes: llama\.cpp's GGUF LoRA cannot represent it; merge instead/);
    await mergeModel(p("base-llama"), (await readPeftAdapter(p("dora"))).adapter, p("dora-merged"));
    await runCli([registerConvert], ["convert", p("dora-merged"), "--to", "gguf", "--out", p("dora-merged.gguf")]);
    const merged = await llama.loadModel({ modelPath: p("dora-merged.gguf") });
    try {
      const got = await runAdapter(merged, undefined, ref.cases.dora);
      expect(got.tokens).toEqual(ref.cases.dora.tokens);
      expect(got.maxLogitDiff).toBeLessThan(LOGIT_TOL);
    } finally {
      await merged.dispose();
    }
  });
});

describe("loralib → GGUF", () => {
  it("a loralib checkpoint (the plain adapter's factors, --r 8 --alpha 16) gives the plain adapter's tokens in llama.cpp", async () => {
    const out = await runCli([registerConvert], ["convert", p("plain-loralib.pt"), "--to", "gguf", "--r", "8", "--alpha", "16", "--base", p("base-llama"), "--out", p("loralib.gguf")]);
    expect(out).toMatch(/wrote .*loralib\.gguf: llama GGUF LoRA adapter, 14 modules/);
    expect((await runAdapter("base-llama", p("loralib.gguf"))).tokens).toEqual(ref.cases.plain.tokens);
  });
});

describe("GGUF LoRA → PEFT", () => {
  it("PEFT loads the folders loraport writes and gives the original greedy tokens; PEFT → GGUF again is byte-identical (f32)", async () => {
    for (const c of CASES) {
      await runCli([registerConvert], ["convert", p(`${c}.gguf`), "--to", "peft", "--out", p(`${c}-back`)]);
      await runCli([registerConvert], ["convert", p(`${c}-back`), "--to", "gguf", "--base", p(ref.cases[c].base), "--out", p(`${c}-again.gguf`)]);
      const a = await readGguf(p(`${c}.gguf`));
      const b = await readGguf(p(`${c}-again.gguf`));
      expect([...b.tensors.keys()]).toEqual([...a.tensors.keys()]);
      for (const [name, t] of a.tensors) expect(Buffer.from(b.tensors.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
    }
    const tokens = lastJson<Record<string, number[]>>(python(["tokens", ...CASES.map((c) => `${p(ref.cases[c].base)}=${p(`${c}-back`)}`)]));
    for (const c of CASES) expect(tokens[p(`${c}-back`)], c).toEqual(ref.cases[c].tokens);
    // The read-back config says what llama.cpp applies: one α, the ranks that differ in rank_pattern.
    const cfg = JSON.parse(readFileSync(p("patterns-back", "adapter_config.json"), "utf8")) as { r: number; lora_alpha: number; rank_pattern: Record<string, number>; use_rslora: boolean };
    expect(cfg).toMatchObject({ r: 8, lora_alpha: 16, use_rslora: false });
    expect(Object.values(cfg.rank_pattern).sort()).toEqual([...Array(2).fill(4), ...Array(2).fill(12)].sort());
  });
});
