// Type-checked by `npm run typecheck`: the README's API table must name real exports. The snippets of README.md and
// docs/*.md are type-checked as they are written in sdk/test/docs/snippets/ (and run by sdk/test/docs/snippets.test.ts).
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
