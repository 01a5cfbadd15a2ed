/**
 * One GGUF metadata value, typed as the file stores it: the type decides the bytes, so a writer must say
 * UINT32 vs INT32 vs FLOAT32 (llama.cpp reads keys with a fixed expected type and refuses others).
 */
import { GgufType } from "./constants.js";

export type GgufScalarType = Exclude<GgufType, typeof GgufType.STRING | typeof GgufType.ARRAY | typeof GgufType.UINT64 | typeof GgufType.INT64 | typeof GgufType.BOOL>;

/** What one array item holds (nested arrays hold arrays). */
export type GgufItem = number | bigint | boolean | string | readonly GgufItem[];

export type GgufValue =
  | { readonly type: GgufScalarType; readonly value: number }
  | { readonly type: typeof GgufType.UINT64 | typeof GgufType.INT64; readonly value: bigint }
  | { readonly type: typeof GgufType.BOOL; readonly value: boolean }
  | { readonly type: typeof GgufType.STRING; readonly value: string }
  | { readonly type: typeof GgufType.ARRAY; readonly itemType: GgufType; readonly value: readonly GgufItem[] };

/** Metadata in file order. */
export type GgufMetadata = ReadonlyMap<string, GgufValue>;

export const gguf = {
  u32: (value: number): GgufValue => ({ type: GgufType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufType.STRING, value }),
  strings: (value: readonly string[]): GgufValue => ({ type: GgufType.ARRAY, itemType: GgufType.STRING, value }),
  f32s: (value: readonly number[]): GgufValue => ({ type: GgufType.ARRAY, itemType: GgufType.FLOAT32, value }),
  i32s: (value: readonly number[]): GgufValue => ({ type: GgufType.ARRAY, itemType: GgufType.INT32, value }),
};

/** A string-valued key, or undefined when absent; a key of another type is the caller's error to report. */
export function stringValue(meta: GgufMetadata, key: string): string | undefined {
  const v = meta.get(key);
  return v?.type === GgufType.STRING ? v.value : undefined;
}

/** A numeric scalar key as a JS number (any integer or float type), or undefined. */
export function numberValue(meta: GgufMetadata, key: string): number | undefined {
  const v = meta.get(key);
  if (v === undefined || v.type === GgufType.STRING || v.type === GgufType.ARRAY || v.type === GgufType.BOOL) return undefined;
  return Number(v.value);
}
