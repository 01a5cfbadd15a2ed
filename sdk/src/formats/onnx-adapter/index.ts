export { decodeOnnxAdapter, readOnnxAdapter } from "./reader.js";
export { encodeOnnxAdapter, writeOnnxAdapter, type OnnxAdapterWriteOptions } from "./writer.js";
export { FORMAT_VERSION as ONNX_ADAPTER_FORMAT_VERSION, type OnnxAdapterFile, type OnnxAdapterParameter } from "./schema.js";
