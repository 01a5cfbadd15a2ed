export { LoraModel, lastLogits, type LoraModelOptions, type ModelInputs, type RunOptions, type RunResult, type CachedBatch, type StepResult } from "./lora-model.js";
export { readManifest, MANIFEST_NAME, type OnnxManifest, type LoraInputEntry, type ExportMode, type ValueInfo, type GenerationInfo, type KvCacheLayout } from "./manifest.js";
export { chooseProviders, cudaUnavailableReason, type ExecutionProvider, type ProviderRequest, type ProviderChoice } from "./providers.js";
export { adapterFeeds, baseFeeds, type AdapterSource } from "./adapter-feeds.js";
export { readAdapterFromPath, type ReadAdapterNotes } from "./read-adapter.js";
export { exportOnnxAdapter, type OnnxAdapterExport } from "./onnx-adapter-export.js";
