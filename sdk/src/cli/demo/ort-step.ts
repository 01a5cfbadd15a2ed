/**
 * Demo step: ONNX Runtime. Export the demo's tiny base with LoRA inputs (and its KV cache and a byte-level
 * tokenizer), run it with and without the demo adapter in onnxruntime-node (worker thread), compare the logits with
 * PyTorch + PEFT in the sidecar, then generate text with the adapter and check the tokens against transformers'
 * own `generate` with the PEFT adapter.
 * Uses the adapters step's PEFT adapter (`adapter.peftDir`) when it fits the tiny GPT-2 (the built-in tiny loralib
 * adapter does; the published GPT-2 Medium one does not), else a seeded adapter of its own.
 */
import { join } from "node:path";
import { readPeftAdapter, writePeftAdapter } from "../../adapter/peft-io.js";
import { Sidecar } from "../../bridge/sidecar.js";
import { ShapeMismatchError } from "../../errors.js";
import { tensor } from "../../tensor/index.js";
import { TextModel } from "../../generation/text-model.js";
import { writeByteTokenizer } from "./byte-tokenizer.js";
import { seededTinyGpt2Adapter } from "./seeded-adapter.js";
import type { DemoContext, DemoStep } from "./step.js";

const IDS = [1, 5, 9, 17, 33, 2, 64, 100];
const PROMPT = "LoRA adapters from TypeScript";
const NEW_TOKENS = 24;
/** The tiny GPT-2 with a byte-level vocabulary: 256 bytes + <|endoftext|>. */
const VOCAB = 257;


function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export const ortStep: DemoStep = {
  title: "ONNX Runtime: one exported base, adapters swapped per request, text generated with a KV cache, vs PyTorch + PEFT",
  async run(ctx: DemoContext): Promise<void> {
    const sc = await Sidecar.start();
    try {
      const base = await sc.loadModel({ source: { kind: "builtin", family: "gpt2", kwargs: { vocab_size: VOCAB } } });
      const out = join(ctx.workDir, "ort-gpt2");
      const tokenizerDir = join(ctx.workDir, "byte-tokenizer");
      writeByteTokenizer(tokenizerDir);
      const ex = await sc.exportOnnx(base, out, { mode: "adapter-inputs", targets: ["c_attn"], tokenizer: tokenizerDir });
      ctx.log(`exported the tiny GPT-2 with LoRA inputs on ${ex.loraModules} modules, a KV cache and a byte-level tokenizer (${ex.seconds.toFixed(1)} s) → ${out}`);

      await using text = await TextModel.load(out);
      const model = text.lora;
      let adapterDir = ctx.shared.get("adapter.peftDir") as string | undefined;
      try {
        if (!adapterDir) throw new ShapeMismatchError("adapter", "no adapter from the adapters step");
        await model.registerAdapter("demo", (await readPeftAdapter(adapterDir)).adapter);
        ctx.log(`adapter: the adapters step's PEFT adapter (${adapterDir})`);
      } catch (err) {
        if (!(err instanceof ShapeMismatchError)) throw err;
        adapterDir = join(ctx.workDir, "ort-demo-adapter");
        await writePeftAdapter(adapterDir, seededTinyGpt2Adapter(12345, 4, 0.2));
        await model.registerAdapter("demo", (await readPeftAdapter(adapterDir)).adapter);
        // The reason in full, on its own line: cut to a width it read as a sentence that stopped halfway.
        ctx.log("adapter: a seeded r=4 c_attn adapter for the tiny GPT-2; the adapters step's adapter does not fit it:");
        ctx.log(`  ${err.message}`);
      }
      const ortBase = (await model.run({ inputIds: IDS })).logits.data as Float32Array;
      const ortLora = await model.run({ inputIds: IDS }, { adapter: "demo" });

      const ids = tensor("I64", [1, IDS.length], BigInt64Array.from(IDS.map(BigInt)));
      const ptBase = (await base.forward({ input_ids: ids }))["logits"]!.data as Float32Array;
      await base.attachAdapter({ kind: "peft", path: adapterDir });
      const ptLora = (await base.forward({ input_ids: ids }))["logits"]!.data as Float32Array;

      ctx.log(`provider: ${ortLora.provider}; forward of ${IDS.length} tokens in ${ortLora.ms.toFixed(2)} ms`);
      ctx.log(`base    : ORT vs PyTorch max |Δlogit| = ${maxAbs(ortBase, ptBase).toExponential(2)}`);
      ctx.log(`adapter : ORT vs PyTorch+PEFT max |Δlogit| = ${maxAbs(ortLora.logits.data as Float32Array, ptLora).toExponential(2)} (the adapter moves logits by up to ${maxAbs(ptLora, ptBase).toFixed(3)})`);

      // Text generation: greedy, KV cache in the worker, streamed; the same tokens as transformers + PEFT generate.
      const stream = text.generate(PROMPT, { adapter: "demo", maxNewTokens: NEW_TOKENS, temperature: 0, ignoreEos: true });
      let streamed = "";
      for await (const d of stream) streamed += d.text;
      const res = await stream.result;
      const promptIds = await text.encodePrompt(PROMPT);
      const reference = await base.hfGenerate({ prompts: [promptIds as [number, ...number[]]], maxNewTokens: NEW_TOKENS, ignoreEos: true });
      const same = JSON.stringify(reference.tokens[0]) === JSON.stringify(res.tokens);
      // A seeded random model picks bytes that are rarely valid UTF-8: the stream shows them as U+FFFD, never split.
      ctx.log(`generate: ${JSON.stringify(PROMPT)} (${promptIds.length} byte tokens) → ids ${res.tokens.slice(0, 10).join(",")},… text ${JSON.stringify(streamed.slice(0, 24))} (random weights: noise, but exact noise)`);
      ctx.log(`generate: ${res.tokens.length} tokens, first after ${res.timings.ttftMs.toFixed(1)} ms, ${res.timings.tokensPerSecond.toFixed(0)} tokens/s; ${same ? "the same tokens as" : "DIFFERENT tokens from"} transformers + PEFT generate`);
      ctx.shared.set("ort.exportDir", out);
      ctx.shared.set("ort.adapterDir", adapterDir);
      if (!same) throw new Error(`demo: ORT generation differs from transformers + PEFT: ${res.tokens.join(",")} vs ${reference.tokens[0]!.join(",")}`);
    } finally {
      await sc.close();
    }
  },
};
