/**
 * Demo step: serving. The ONNX Runtime step's export behind `startServer` (the OpenAI API `loraport serve` speaks),
 * with two adapters; concurrent requests for both adapters and the base are decoded together in mixed-adapter
 * batches (continuous batching), and each answer equals that request generated alone.
 */
import { join } from "node:path";
import { readPeftAdapter, writePeftAdapter } from "../../adapter/peft-io.js";
import { TextModel } from "../../generation/text-model.js";
import { startServer } from "../../serving/http/index.js";
import { LocalEngine } from "../../serving/local-engine.js";
import { seededTinyGpt2Adapter } from "./seeded-adapter.js";
import type { DemoContext, DemoStep } from "./step.js";

const NEW_TOKENS = 16;
const PROMPTS = [[76, 111, 82, 65], [104, 101, 108, 108, 111, 32], [84, 83], [97, 98, 99, 100, 101], [49, 50, 51], [120, 121]];


export const serveStep: DemoStep = {
  title: "Serving: an OpenAI-compatible server, requests for different adapters batched together",
  async run(ctx: DemoContext): Promise<void> {
    const exportDir = ctx.shared.get("ort.exportDir") as string | undefined;
    const adapterDir = ctx.shared.get("ort.adapterDir") as string | undefined;
    if (!exportDir || !adapterDir) throw new Error("demo: the serving step needs the ONNX Runtime step's export");
    const second = join(ctx.workDir, "serve-adapter-2");
    await writePeftAdapter(second, seededTinyGpt2Adapter(777, 8, 0.3));

    const engine = await LocalEngine.start(exportDir, { name: "tiny-gpt2", maxBatchSize: 8 });
    const server = await startServer(engine, { port: 0 });
    try {
      await engine.loadAdapter("demo", adapterDir);
      await engine.loadAdapter("second", second);
      ctx.log(`serving ${server.url}/v1 (OpenAI API): models ${["tiny-gpt2", ...engine.models().adapters].join(", ")}`);
      const models = PROMPTS.map((_, i) => ["demo", "second", "tiny-gpt2"][i % 3]!);
      let maxBatch = 0;
      const watch = setInterval(() => (maxBatch = Math.max(maxBatch, engine.stats().batchSize)), 1);
      const t0 = performance.now();
      const answers = await Promise.all(PROMPTS.map(async (prompt, i) => {
        const res = await fetch(`${server.url}/v1/completions`, {
          method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: models[i], prompt, max_tokens: NEW_TOKENS, temperature: 0, ignore_eos: true, return_token_ids: true }),
        });
        if (!res.ok) throw new Error(`demo: POST /v1/completions answered ${res.status}: ${await res.text()}`);
        return ((await res.json()) as { choices: { token_ids: number[] }[] }).choices[0]!.token_ids;
      }));
      const ms = performance.now() - t0;
      clearInterval(watch);
      const stats = engine.stats();
      ctx.log(`${PROMPTS.length} concurrent requests over 2 adapters and the base: ${stats.generatedTokensTotal} tokens in ${ms.toFixed(0)} ms, ${stats.stepsTotal} decode steps, up to ${maxBatch} sequences per step`);

      // Each answer must equal that request generated alone, with its adapter.
      await using alone = await TextModel.load(exportDir);
      await alone.registerAdapter("demo", (await readPeftAdapter(adapterDir)).adapter);
      await alone.registerAdapter("second", (await readPeftAdapter(second)).adapter);
      let same = 0;
      for (const [i, prompt] of PROMPTS.entries()) {
        const adapter = models[i] === "tiny-gpt2" ? null : models[i]!;
        const r = await alone.generate(prompt, { adapter, maxNewTokens: NEW_TOKENS, temperature: 0, ignoreEos: true }).result;
        if (JSON.stringify(r.tokens) === JSON.stringify(answers[i])) same++;
      }
      ctx.log(`${same}/${PROMPTS.length} answers equal the same request generated alone (mixed-adapter batches are exact)`);
      if (same !== PROMPTS.length) throw new Error("demo: a batched answer differs from the same request alone");
    } finally {
      await server.close();
      await engine.close();
    }
  },
};
