/** loraport's public API. Everything not exported here is internal. */
export * from "./errors.js";
export * from "./tensor/index.js";
export * from "./formats/safetensors/index.js";
export * from "./formats/torch/index.js";
export { loadStateDict } from "./formats/load-state-dict.js";
export { detectFormat, type WeightsFormat } from "./formats/detect.js";
export { summariseWeights, type WeightsSummary } from "./formats/summary.js";
export { convertTorchToSafetensors, type TorchToSafetensorsResult } from "./formats/convert.js";
export { mmapAvailable } from "./formats/mmap.js";
export type { ProgressEvent, ProgressCallback } from "./progress.js";
export * from "./adapter/index.js";
export * from "./runtime/index.js";
export * from "./tokenizer/index.js";
export * from "./generation/index.js";
export * from "./serving/index.js";
export * from "./bridge/index.js";
export * from "./conformance/index.js";
export * from "./training/index.js";
