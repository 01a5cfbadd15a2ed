/**
 * The dtype table, in one place. Names are the safetensors names; every other format maps onto them.
 */
export const DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2"] as const;
export type DType = (typeof DTYPES)[number];

/** The typed array that holds each dtype's raw little-endian bits (F16/BF16 as Uint16Array, BOOL and F8 as Uint8Array). */
export type TensorData =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

interface DTypeInfo {
  /** Bytes per element. */
  readonly itemsize: number;
  /** Constructor of the array that holds the raw bits. */
  readonly array: { new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData; new (length: number): TensorData };
  /** True for floating-point dtypes (those `toFloat32` converts from). */
  readonly float: boolean;
}

const INFO: Record<DType, DTypeInfo> = {
  F64: { itemsize: 8, array: Float64Array, float: true },
  F32: { itemsize: 4, array: Float32Array, float: true },
  F16: { itemsize: 2, array: Uint16Array, float: true },
  BF16: { itemsize: 2, array: Uint16Array, float: true },
  I64: { itemsize: 8, array: BigInt64Array, float: false },
  I32: { itemsize: 4, array: Int32Array, float: false },
  I16: { itemsize: 2, array: Int16Array, float: false },
  I8: { itemsize: 1, array: Int8Array, float: false },
  U64: { itemsize: 8, array: BigUint64Array, float: false },
  U32: { itemsize: 4, array: Uint32Array, float: false },
  U16: { itemsize: 2, array: Uint16Array, float: false },
  U8: { itemsize: 1, array: Uint8Array, float: false },
  BOOL: { itemsize: 1, array: Uint8Array, float: false },
  F8_E4M3: { itemsize: 1, array: Uint8Array, float: false },
  F8_E5M2: { itemsize: 1, array: Uint8Array, float: false },
};

export function isDType(x: unknown): x is DType {
  return typeof x === "string" && Object.hasOwn(INFO, x);
}

export function itemsize(dtype: DType): number {
  return INFO[dtype].itemsize;
}

export function isFloat(dtype: DType): boolean {
  return INFO[dtype].float;
}

export function arrayTypeOf(dtype: DType): DTypeInfo["array"] {
  return INFO[dtype].array;
}

/** PyTorch dtype name (`torch.float32`) to safetensors name, for the sidecar and for torch checkpoints. */
export const TORCH_TO_DTYPE: Readonly<Record<string, DType>> = {
  float64: "F64", float32: "F32", float16: "F16", bfloat16: "BF16",
  int64: "I64", int32: "I32", int16: "I16", int8: "I8",
  uint64: "U64", uint32: "U32", uint16: "U16", uint8: "U8", bool: "BOOL",
  float8_e4m3fn: "F8_E4M3", float8_e5m2: "F8_E5M2",
};

/** ONNX Runtime's tensor type names for the dtypes it takes from JS (no bf16 at the JS boundary). */
export const DTYPE_TO_ORT: Partial<Readonly<Record<DType, string>>> = {
  F64: "float64", F32: "float32", F16: "float16", I64: "int64", I32: "int32", I16: "int16",
  I8: "int8", U64: "uint64", U32: "uint32", U16: "uint16", U8: "uint8", BOOL: "bool",
};
