/**
 * ONNX Runtime's LoRA adapter file (`.onnx_adapter`), the format `onnxruntime.AdapterFormat` reads and Olive writes:
 * a FlatBuffer with file identifier "TORT" whose root table is
 *
 *   table Adapter   { format_version:int; adapter_version:int; model_version:int; parameters:[Parameter]; }
 *   table Parameter { name:string; dims:[int64]; data_type:TensorDataType(int32); raw_data:[uint8] (force_align: 8); }
 *
 * (onnxruntime/lora/adapter_format/adapter_schema.fbs). Field ids are the declaration order above.
 */
import type { DType } from "../../tensor/index.js";

export const FILE_IDENTIFIER = "TORT";
/** The only format version ONNX Runtime 1.20–1.32 reads. */
export const FORMAT_VERSION = 1;

/** Field slots (vtable indices) of the two tables. */
export const ADAPTER_FIELDS = { formatVersion: 0, adapterVersion: 1, modelVersion: 2, parameters: 3 } as const;
export const PARAMETER_FIELDS = { name: 0, dims: 1, dataType: 2, rawData: 3 } as const;

/** ONNX TensorProto.DataType codes, as the schema's TensorDataType enum numbers them, for loraport's dtypes. */
const ONNX_CODE: Partial<Record<DType, number>> = {
  F32: 1, U8: 2, I8: 3, U16: 4, I16: 5, I32: 6, I64: 7, BOOL: 9, F16: 10, F64: 11, U32: 12, U64: 13, BF16: 16,
  F8_E4M3: 17, F8_E5M2: 19,
};
const FROM_CODE = new Map<number, DType>(Object.entries(ONNX_CODE).map(([d, c]) => [c, d as DType]));

/** The schema's TensorDataType for `dtype`, or undefined when the format has none. */
export function onnxDataType(dtype: DType): number | undefined {
  return ONNX_CODE[dtype];
}

/** loraport's dtype for a TensorDataType code, or undefined (strings, complex, FNUZ floats). */
export function dtypeOfOnnxCode(code: number): DType | undefined {
  return FROM_CODE.get(code);
}

/** One named tensor in an adapter file: raw little-endian bytes, as the format stores them. */
export interface OnnxAdapterParameter {
  readonly name: string;
  readonly dtype: DType;
  readonly dims: readonly number[];
  readonly data: Uint8Array;
}

export interface OnnxAdapterFile {
  readonly formatVersion: number;
  /** The adapter's own version number (free for the writer; ORT only stores it). */
  readonly adapterVersion: number;
  /** The version of the model the adapter is for (free for the writer; ORT only stores it). */
  readonly modelVersion: number;
  readonly parameters: readonly OnnxAdapterParameter[];
}
