/**
 * What a GGUF LoRA cannot hold is refused up front with a typed error naming the key and saying to merge instead;
 * unsupported architectures are refused in one line naming them; bad flags name the flag. No Python needed.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LoraportError, UnsupportedFeatureError, FormatError } from "../../src/errors.js";
import { loraConfig, type LoraAdapter, type LoraModule } from "../../src/adapter/index.js";
import { adapterToGguf } from "../../src/adapter/gguf-adapter.js";
import { readGgufBaseInfo } from "../../src/adapter/gguf-hparams.js";
import { permuteRows } from "../../src/adapter/gguf-arch.js";
import { readPeftAdapter, writePeftAdapter } from "../../src/adapter/peft-io.js";
import { registerConvert } from "../../src/cli/commands/convert.js";
import { gguf, writeGguf } from "../../src/formats/gguf/index.js";
import { tensor } from "../../src/tensor/index.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/python.js";

const tmp = tempDir("loraport-gguf-refuse-");
afterAll(() => tmp.cleanup());
const LLAMA = { arch: { name: "llama" as const, permuteQK: true }, nHead: 2, nHeadKv: 1, notes: [] };

const randn = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 97 + i * 1.3));
function mod(extra: Partial<LoraModule> = {}): LoraModule {
  return { kind: "linear", A: tensor("F32", [2, 8], randn(16, 1)), B: tensor("F32", [8, 2], randn(16, 2)), ...extra };
}
function adapter(config: Parameters<typeof loraConfig>[0], modules: Record<string, LoraModule>, extra: Record<string, ReturnType<typeof tensor>> = {}): LoraAdapter {
  return { config: loraConfig({ r: 2, lora_alpha: 4, target_modules: ["q_proj"], ...config }), modules: new Map(Object.entries(modules)), extraTensors: new Map(Object.entries(extra)) };
}
function refusal(fn: () => unknown): UnsupportedFeatureError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UnsupportedFeatureError);
    return e as UnsupportedFeatureError;
  }
  throw new Error("not refused");
}

describe("GGUF LoRA refusals", () => {
  const q = "model.layers.0.self_attn.q_proj";
  it("DoRA, lora_bias and tensors saved whole (modules_to_save): refused naming the key, saying to merge", () => {
    const dora = refusal(() => adapterToGguf(adapter({ use_dora: true }, { [q]: mod({ magnitude: tensor("F32", [8], randn(8, 3)) }) }), LLAMA));
    expect(dora.key).toBe("use_dora");
    const bias = refusal(() => adapterToGguf(adapter({ lora_bias: true }, { [q]: mod({ bBias: tensor("F32", [8], randn(8, 4)) }) }), LLAMA));
    expect(bias.key).toBe("lora_bias");
    const whole = refusal(() => adapterToGguf(adapter({ modules_to_save: ["lm_head"] }, { [q]: mod() }, { "lm_head.weight": tensor("F32", [4, 8], randn(32, 5)) }), LLAMA));
    expect(whole.key).toBe("modules_to_save");
    for (const e of [dora, bias, whole]) expect(e.message).toMatch(/llama\.cpp's GGUF LoRA cannot represent it; merge instead \(loraport merge/);
  });

  it("a module llama.cpp has no tensor for, and an embedding LoRA, are refused by module name", () => {
    expect(refusal(() => adapterToGguf(adapter({}, { "model.layers.0.self_attn.rotary": mod() }), LLAMA)).message).toMatch(/module model\.layers\.0\.self_attn\.rotary has no llama GGUF tensor/);
    const emb = mod({ kind: "embedding" });
    expect(refusal(() => adapterToGguf(adapter({}, { "model.embed_tokens": emb }), LLAMA)).message).toMatch(/model\.embed_tokens: embedding LoRA is not written to GGUF/);
  });

  it("an unsupported architecture is refused in one line naming it, from an HF config and from a GGUF", async () => {
    const dir = join(tmp.dir, "gpt2");
    mkdirSync(dir);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "gpt2", n_head: 4 }));
    await expect(readGgufBaseInfo(dir)).rejects.toThrow(/architecture 'gpt2' is not supported for GGUF \(supported: llama, mistral, qwen2\)$/);
    const file = join(tmp.dir, "phi.gguf");
    await writeGguf(file, { metadata: [["general.architecture", gguf.str("phi3")]], tensors: [] });
    await expect(readGgufBaseInfo(file)).rejects.toThrow(/GGUF architecture 'phi3' is not supported/);
  });

  it("CLI: missing --base, a bad --outtype and a model GGUF given to --to peft are one-line typed errors", async () => {
    const dir = join(tmp.dir, "peft");
    await writePeftAdapter(dir, adapter({}, { [q]: mod() }));
    const run = (...argv: string[]) => runCli([registerConvert], ["convert", ...argv]);
    await expect(run(dir, "--to", "gguf", "--out", join(tmp.dir, "a.gguf"))).rejects.toThrow(/needs --base <HF model folder \| base \.gguf>/);
    await expect(run(dir, "--to", "gguf", "--outtype", "q8_0", "--out", join(tmp.dir, "a.gguf"))).rejects.toThrow(LoraportError);
    await expect(run(dir, "--to", "gguf", "--outtype", "q8_0", "--out", join(tmp.dir, "a.gguf"))).rejects.toThrow(/--outtype q8_0: expected f32, f16 or bf16/);
    const model = join(tmp.dir, "model.gguf");
    await writeGguf(model, { metadata: [["general.architecture", gguf.str("llama")], ["general.type", gguf.str("model")]], tensors: [] });
    await expect(run(model, "--to", "peft", "--out", join(tmp.dir, "back"))).rejects.toThrow(FormatError);
    await expect(run(model, "--to", "peft", "--out", join(tmp.dir, "back"))).rejects.toThrow(/general\.type is "model", expected "adapter"/);
  });

  it("lm_head LoRA on a base with tied embeddings (no 'output' tensor in llama.cpp) is refused", () => {
    const lm = { kind: "linear" as const, A: tensor("F32", [2, 8], randn(16, 1)), B: tensor("F32", [16, 2], randn(32, 2)) };
    expect(refusal(() => adapterToGguf(adapter({ target_modules: ["lm_head"] }, { lm_head: lm }), { ...LLAMA, tied: true })).message)
      .toMatch(/module lm_head: the base ties its embeddings, so llama\.cpp has no 'output' tensor/);
    expect(adapterToGguf(adapter({ target_modules: ["lm_head"] }, { lm_head: lm }), { ...LLAMA, tied: false }).tensors.map(([n]) => n)).toEqual(["output.weight.lora_a", "output.weight.lora_b"]);
  });

  it("GGUF → PEFT of a file without head counts (as llama.cpp's converter writes) needs --base; with it, B is un-permuted", async () => {
    const orig = adapter({}, { [q]: mod() });
    const file = adapterToGguf(orig, LLAMA);
    const bare = join(tmp.dir, "bare.gguf");
    await writeGguf(bare, { metadata: file.metadata.filter(([k]) => !k.includes("head_count")), tensors: file.tensors });
    const run = (...argv: string[]) => runCli([registerConvert], ["convert", bare, "--to", "peft", ...argv]);
    await expect(run("--out", join(tmp.dir, "bare-peft"))).rejects.toThrow(/blk\.0\.attn_q: llama\.attention\.head_count is missing; pass --base/);
    const baseGguf = join(tmp.dir, "heads.gguf");
    await writeGguf(baseGguf, { metadata: [["general.architecture", gguf.str("llama")], ["llama.attention.head_count", gguf.u32(2)], ["llama.attention.head_count_kv", gguf.u32(1)]], tensors: [] });
    await run("--base", baseGguf, "--out", join(tmp.dir, "bare-peft"));
    const back = (await readPeftAdapter(join(tmp.dir, "bare-peft"))).adapter.modules.get(q)!;
    expect([...back.B.data]).toEqual([...orig.modules.get(q)!.B.data]);
    expect([...back.A.data]).toEqual([...orig.modules.get(q)!.A.data]);
  });

  it("the Q/K permutation is a permutation and its inverse undoes it", () => {
    const x = Float32Array.from({ length: 8 * 3 }, (_, i) => i);
    const y = permuteRows(x, 8, 3, 2);
    expect([...y].sort((a, b) => a - b)).toEqual([...x]);
    expect([...y]).not.toEqual([...x]);
    expect([...permuteRows(y, 8, 3, 2, true)]).toEqual([...x]);
    // head 0 rows [0 1 2 3] (halves [0 1] [2 3]) become interleaved [0 2 1 3]
    expect([...y.subarray(0, 12)]).toEqual([0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]);
  });
});
