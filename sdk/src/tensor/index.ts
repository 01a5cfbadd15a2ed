export type { Tensor } from "./tensor.js";
export { DTYPES, isDType, itemsize, isFloat, TORCH_TO_DTYPE, DTYPE_TO_ORT, type DType, type TensorData } from "./dtype.js";
export { numel, tensor, fromBytes, bytesOf, byteLength, toFloat32, fromFloat32, castTo } from "./tensor-impl.js";
export { f16ToF32, f32ToF16, bf16ToF32, f32ToBF16, f32ToF16Bits } from "./half.js";
export { checkTensor, checkDType, checkShape } from "./check-tensor.js";
