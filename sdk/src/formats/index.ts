/** Weights file formats: safetensors (read/write) and torch.save checkpoints (read). */
export * from "./safetensors/index.js";
export * from "./torch/index.js";
export { loadStateDict } from "./load-state-dict.js";
export { detectFormat, type WeightsFormat } from "./detect.js";
export { summariseWeights, type WeightsSummary } from "./summary.js";
export { convertTorchToSafetensors, type TorchToSafetensorsResult } from "./convert.js";
export { mmapAvailable } from "./mmap.js";
export { DEFAULT_READ_LIMITS, ReadBudget, type ReadLimits, type ReadOptions } from "./limits.js";
