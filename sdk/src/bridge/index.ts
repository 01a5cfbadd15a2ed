/** The PyTorch bridge's public surface. */
export { Sidecar } from "./sidecar.js";
export { ModelHandle } from "./model-handle.js";
export type { SidecarOptions, CallOptions, CallResult, SidecarCapabilities } from "./options.js";
export type { ExportOnnxOptions, ExportOnnxResult, ExportTrainStepOptions, ExportTrainStepResult, TrainStepModel } from "./export-calls.js";
export type { TensorsIn } from "./internal/codec.js";
export type * as SidecarMethods from "./generated/methods.js";
export type { MethodMap, MethodName, LoadModelParams, AttachAdapterParams, ForwardParams } from "./generated/methods.js";
export { METHOD_NAMES } from "./generated/methods.js";
