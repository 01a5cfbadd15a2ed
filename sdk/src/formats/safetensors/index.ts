/** safetensors: lazy validated reader, sharded models, byte-exact atomic writer. */
export type { SafetensorsEntry } from "./header.js";
export { MAX_HEADER_BYTES } from "./header.js";
export { MMAP_MIN_BYTES, openSafetensors, readSafetensors, type ReadSafetensorsOptions, type TensorSource } from "./reader.js";
export { openSafetensorsModel, type ModelSource } from "./sharded.js";
export { writeSafetensors } from "./writer.js";
