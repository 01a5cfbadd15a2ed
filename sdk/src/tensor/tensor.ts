import type { DType, TensorData } from "./dtype.js";

/**
 * A dense, C-contiguous, little-endian tensor. Plain data (no methods), so it crosses worker threads
 * and the sidecar bridge as is. F16/BF16 hold their bits in a Uint16Array; use `toFloat32` to compute.
 */
export interface Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: TensorData;
}

export type { DType, TensorData } from "./dtype.js";
