// Type-checked by `npm run typecheck`: the README's API table and snippet must name real exports.
import {
  openSafetensors, openSafetensorsModel, readSafetensors, writeSafetensors, readTorchCheckpoint, loadStateDict,
  readPeftAdapter, writePeftAdapter, parseLoraConfig, readLoralibCheckpoint, convertLoralibToPeft, mergeWeight,
  mergeModel, catAdapters, adapterFactors, Sidecar, ModelHandle, LoraModel, Trainer,
  runConformance, runVerify, TextModel, generateBatch, Sampler, loadTokenizer, StreamDecoder,
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
