// Type-checked by `npm run typecheck`: the README's API table and snippet must name real exports.
import {
  openSafetensors, openSafetensorsModel, readSafetensors, writeSafetensors, readTorchCheckpoint, loadStateDict,
  readPeftAdapter, writePeftAdapter, parseLoraConfig, readLoralibCheckpoint, convertLoralibToPeft, mergeWeight,
  mergeModel, catAdapters, adapterFactors, Sidecar, ModelHandle, LoraModel, Trainer,
  runConformance, runVerify,
} from "../src/index.js";

export const names = [openSafetensors, openSafetensorsModel, readSafetensors, writeSafetensors, readTorchCheckpoint, loadStateDict,
  readPeftAdapter, writePeftAdapter, parseLoraConfig, readLoralibCheckpoint, convertLoralibToPeft, mergeWeight,
  mergeModel, catAdapters, adapterFactors, Sidecar, ModelHandle, LoraModel, Trainer,
  runConformance, runVerify, Sidecar.prototype.exportOnnx, Sidecar.prototype.exportTrainStep];

export async function readmeSnippet(): Promise<void> {
  await using sc = await Sidecar.start();
  await sc.exportOnnx("path/to/hf-model", "onnx/", { mode: "adapter-inputs", targets: ["c_attn"] });
  const model = await LoraModel.load("onnx/");
  await model.registerAdapter("support", (await readPeftAdapter("adapters/support")).adapter);
  await model.registerAdapter("sales", (await readPeftAdapter("adapters/sales")).adapter);
  const out = await model.run({ inputIds: [[1, 5, 9]] }, { adapter: "sales" });
  console.log(out.provider, out.logits.shape);
}
