/**
 * GGUF's fixed numbers (gguf-py `constants.py`, ggml `ggml.h`): magic, versions, value types, ggml tensor
 * types with their block sizes. Names are kept as ggml spells them so errors match llama.cpp's logs.
 */
import type { DType } from "../../tensor/dtype.js";

/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml tensors have at most 4 dimensions (GGML_MAX_DIMS). */
export const GGML_MAX_DIMS = 4;

/** Metadata value types (`GGUFValueType`). */
export const GgufType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
export type GgufType = (typeof GgufType)[keyof typeof GgufType];

export const GGUF_TYPE_NAMES: Readonly<Record<GgufType, string>> = {
  0: "UINT8", 1: "INT8", 2: "UINT16", 3: "INT16", 4: "UINT32", 5: "INT32", 6: "FLOAT32", 7: "BOOL",
  8: "STRING", 9: "ARRAY", 10: "UINT64", 11: "INT64", 12: "FLOAT64",
};

/** Bytes of one fixed-size scalar of each type (strings and arrays are variable). */
export const GGUF_SCALAR_BYTES: Readonly<Partial<Record<GgufType, number>>> = {
  0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8,
};

export function isGgufType(x: number): x is GgufType {
  return Number.isInteger(x) && x >= 0 && x <= 12;
}

/** A ggml tensor type: its name and block layout (elements per block, bytes per block). */
export interface GgmlTypeInfo {
  readonly name: string;
  readonly blockSize: number;
  readonly typeSize: number;
  /** The loraport dtype holding it unconverted, for the plain (non-block) types. */
  readonly dtype?: DType;
}

const QK_K = 256;
/** `GGML_QUANT_SIZES`, by ggml type id. */
export const GGML_TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map<number, GgmlTypeInfo>([
  [0, { name: "F32", blockSize: 1, typeSize: 4, dtype: "F32" }],
  [1, { name: "F16", blockSize: 1, typeSize: 2, dtype: "F16" }],
  [2, { name: "Q4_0", blockSize: 32, typeSize: 2 + 16 }],
  [3, { name: "Q4_1", blockSize: 32, typeSize: 2 + 2 + 16 }],
  [6, { name: "Q5_0", blockSize: 32, typeSize: 2 + 4 + 16 }],
  [7, { name: "Q5_1", blockSize: 32, typeSize: 2 + 2 + 4 + 16 }],
  [8, { name: "Q8_0", blockSize: 32, typeSize: 2 + 32 }],
  [9, { name: "Q8_1", blockSize: 32, typeSize: 2 + 2 + 32 }],
  [10, { name: "Q2_K", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 16 + QK_K / 4 }],
  [11, { name: "Q3_K", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + 12 }],
  [12, { name: "Q4_K", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + 12 }],
  [13, { name: "Q5_K", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 8 + 12 }],
  [14, { name: "Q6_K", blockSize: QK_K, typeSize: 2 + QK_K / 2 + QK_K / 4 + QK_K / 16 }],
  [15, { name: "Q8_K", blockSize: QK_K, typeSize: 4 + QK_K + QK_K / 8 }],
  [16, { name: "IQ2_XXS", blockSize: QK_K, typeSize: 2 + QK_K / 4 }],
  [17, { name: "IQ2_XS", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 32 }],
  [18, { name: "IQ3_XXS", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 }],
  [19, { name: "IQ1_S", blockSize: QK_K, typeSize: 2 + QK_K / 8 + QK_K / 16 }],
  [20, { name: "IQ4_NL", blockSize: 32, typeSize: 2 + 16 }],
  [21, { name: "IQ3_S", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4 }],
  [22, { name: "IQ2_S", blockSize: QK_K, typeSize: 2 + QK_K / 4 + QK_K / 16 }],
  [23, { name: "IQ4_XS", blockSize: QK_K, typeSize: 2 + 2 + QK_K / 2 + QK_K / 64 }],
  [24, { name: "I8", blockSize: 1, typeSize: 1, dtype: "I8" }],
  [25, { name: "I16", blockSize: 1, typeSize: 2, dtype: "I16" }],
  [26, { name: "I32", blockSize: 1, typeSize: 4, dtype: "I32" }],
  [27, { name: "I64", blockSize: 1, typeSize: 8, dtype: "I64" }],
  [28, { name: "F64", blockSize: 1, typeSize: 8, dtype: "F64" }],
  [29, { name: "IQ1_M", blockSize: QK_K, typeSize: QK_K / 8 + QK_K / 16 + QK_K / 32 }],
  [30, { name: "BF16", blockSize: 1, typeSize: 2, dtype: "BF16" }],
  [34, { name: "TQ1_0", blockSize: QK_K, typeSize: 2 + 4 * 13 }],
  [35, { name: "TQ2_0", blockSize: QK_K, typeSize: 2 + 64 }],
  [39, { name: "MXFP4", blockSize: 32, typeSize: 1 + 16 }],
  [40, { name: "NVFP4", blockSize: 64, typeSize: 4 + 32 }],
  [41, { name: "Q1_0", blockSize: 128, typeSize: 2 + 16 }],
  [42, { name: "Q2_0", blockSize: 64, typeSize: 2 + 16 }],
]);

/** The ggml type that stores a loraport dtype as is (undefined: GGUF has none, e.g. U8/BOOL/F8). */
export function ggmlTypeOf(dtype: DType): number | undefined {
  for (const [id, info] of GGML_TYPES) if (info.dtype === dtype) return id;
  return undefined;
}

/** `general.file_type` (`LlamaFileType`) for the float types loraport writes. */
export const LLAMA_FILE_TYPE: Readonly<Record<"F32" | "F16" | "BF16", number>> = { F32: 0, F16: 1, BF16: 32 };
