/** GGUF (llama.cpp's model and adapter files): header parsing with validated offsets, reader, writer. */
export { GGUF_MAGIC, GGUF_VERSION, GGUF_DEFAULT_ALIGNMENT, GgufType, GGML_TYPES, ggmlTypeOf, LLAMA_FILE_TYPE, type GgmlTypeInfo } from "./constants.js";
export { gguf, stringValue, numberValue, type GgufValue, type GgufMetadata } from "./value.js";
export { parseGgufHeader, type GgufHeader, type GgufTensorInfo } from "./header.js";
export { openGguf, readGguf, readGgufTensor } from "./reader.js";
export { writeGguf, buildGgufHeader, GGML_MAX_NAME, type GgufWriteInput } from "./writer.js";
