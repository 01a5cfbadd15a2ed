// Type-checked by `npm run typecheck`: the README's API table and snippet must name real exports.
import {
  openSafetensors, openSafetensorsModel, readSafetensors, writeSafetensors, readTorchCheckpoint, loadStateDict,
  readPeftAdapter, writePeftAdapter, parseLoraConfig, readLoralibCheckpoint, convertLoralibToPeft, mergeWeight,
  mergeModel, catAdapters, adapterFactors, Sidecar, ModelHandle, LoraModel, Trainer,
  runConformance, runVerify, TextModel, generateBatch, Sampler, loadTokenizer, StreamDecoder, LocalEngine, startServer, VllmEngine,
} from "../src/index.js";

export const names = [openSafetensors, openSafetensorsModel, readSafetensors, writeSafetensors, readTorchCheckpoint, loadStateDict,
  readPeftAdapter, writePeftAdapter, parseLoraConfig, readLoralibCheckpoint, convertLoralibToPeft, mergeWeight,
  mergeModel, catAdapters, adapterFactors, Sidecar, ModelHandle, LoraModel, Trainer,
  runConformance, runVerify, Sidecar.prototype.exportOnnx, Sidecar.prototype.exportTrainStep, TextModel, generateBatch, Sampler, loadTokenizer, StreamDecoder];

export async function readmeSnippet(): Promise<void> {
  await using sc = await Sidecar.start();
  await sc.exportOnnx("path/to/hf-model", "onnx/", { mode: "adapter-inputs", targets: ["c_attn"] });
  const model = await LoraModel.load("onnx/");
  await model.registerAdapter("support", (await readPeftAdapter("adapters/support")).adapter);
  await model.registerAdapter("sales", (await readPeftAdapter("adapters/sales")).adapter);
  const out = await model.run({ inputIds: [[1, 5, 9]] }, { adapter: "sales" });
  console.log(out.provider, out.logits.shape);
  await model.close();

  await using text = await TextModel.load("onnx/");
  await text.registerAdapter("sales", (await readPeftAdapter("adapters/sales")).adapter);
  for await (const d of text.generate("Hello", { adapter: "sales", maxNewTokens: 32 })) process.stdout.write(d.text);
}

/** docs/generation.md's TypeScript snippet. */
export async function generationDocSnippet(): Promise<void> {
  await using model = await TextModel.load("onnx/");
  await model.registerAdapter("support", (await readPeftAdapter("adapters/support")).adapter);
  const stream = model.generate("Hello", { adapter: "support", maxNewTokens: 64, temperature: 0.7, topP: 0.9, seed: 1 });
  for await (const delta of stream) process.stdout.write(delta.text);
  const result = await stream.result;
  const chat = await model.generate([{ role: "user", content: "Hi" }], { adapter: "support" }).result;
  const batch = await model.generateBatch(["short", "a longer prompt"], { maxNewTokens: 16 }).result;
  console.log(result.finishReason, chat.text, batch.length);
}

/** docs/serving.md's TypeScript snippets. */
export async function servingDocSnippets(): Promise<void> {
  const { default: OpenAI } = await import("openai");
  const client = new OpenAI({ baseURL: "http://127.0.0.1:8000/v1", apiKey: "unused" });
  const r = await client.completions.create({ model: "support", prompt: "Hello", max_tokens: 32, temperature: 0 });
  for await (const c of await client.chat.completions.create({ model: "sales", messages: [{ role: "user", content: "Hi" }], stream: true })) {
    process.stdout.write(c.choices[0]?.delta.content ?? "");
  }
  const engine = await LocalEngine.start("onnx/", { maxBatchSize: 32, maxLoras: 16 });
  await engine.loadAdapter("support", "adapters/support");
  const res = await engine.generate({ prompt: "Hello", options: { adapter: "support", maxNewTokens: 32 } }).result;
  const server = await startServer(engine, { port: 8000 });
  const remote = await VllmEngine.start({ model: "path/to/hf-model", maxLoraRank: 16, maxLoras: 8 });
  await remote.loadAdapter("support", "adapters/support");
  const res2 = await remote.generate({ prompt: [1, 5, 9], options: { adapter: "support", maxNewTokens: 32 } }).result;
  console.log(r.choices[0]?.text, res.text, res2.tokens, server.url);
}
