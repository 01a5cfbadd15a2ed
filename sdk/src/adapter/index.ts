/** LoRA adapters: PEFT config and I/O, loralib checkpoints and presets, exact conversion, math and merging. */
export * from "./config.js";
export * from "./adapter.js";
export * from "./math.js";
export * from "./factors.js";
export * from "./combine.js";
export { foldSavedLayers, hasSavedLayers } from "./saved-layers.js";
export { parsePyJson, dumpsPy, pyFloatRepr, type JsonValue, type JsonPath, type PyJsonDocument } from "./pyjson.js";
export * from "./peft-io.js";
export * from "./presets.js";
export * from "./loralib.js";
export * from "./convert.js";
export * from "./merge-model.js";
export { writeSafetensorsStreaming, type PlannedTensor } from "./stream-writer.js";
export { adapterToGguf, adapterFromGguf, type GgufOutType, type GgufAdapterFile } from "./gguf-adapter.js";
export { writeGgufModel, type GgufModelReport } from "./gguf-base.js";
export { mergeToGguf, type MergeToGgufOptions, type MergeToGgufReport } from "./merge-gguf.js";
export { readGgufBaseInfo, readHfHparams, type GgufBaseInfo, type HfHparams } from "./gguf-hparams.js";
export { GGUF_MODEL_TYPES, type GgufArchName, type GgufArchitecture } from "./gguf-arch.js";
