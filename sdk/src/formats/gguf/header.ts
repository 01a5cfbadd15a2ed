/**
 * The GGUF header: magic, version, metadata key/values, tensor infos, alignment, each offset validated
 * before it is trusted (as llama.cpp's `gguf_init_from_file` does): counts bounded by the bytes left,
 * strings UTF-8, no duplicate keys or tensor names, known ggml types, dimensions that multiply without
 * overflow, offsets aligned and inside the file, tensors not overlapping.
 */
import { FormatError } from "../../errors.js";
import { Cursor } from "./cursor.js";
import {
  GGML_MAX_DIMS, GGML_TYPES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_SCALAR_BYTES, GGUF_TYPE_NAMES, GgufType, isGgufType,
  type GgmlTypeInfo,
} from "./constants.js";
import type { GgufItem, GgufMetadata, GgufValue } from "./value.js";

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml order: `ne[0]` is the fastest-moving dimension. */
  readonly ne: readonly number[];
  /** Row-major (numpy/PyTorch) shape: `ne` reversed. */
  readonly shape: readonly number[];
  readonly ggmlType: number;
  readonly typeInfo: GgmlTypeInfo;
  /** Absolute position of the tensor's first byte in the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

export interface GgufHeader {
  readonly file: string;
  readonly version: number;
  readonly metadata: GgufMetadata;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** Where the data section starts (the header's end rounded up to the alignment). */
  readonly dataStart: number;
}

/** Arrays nested deeper than this are refused (GGUF allows nesting; llama.cpp never writes it). */
const MAX_ARRAY_DEPTH = 4;

/** Parse a header from the file's first `bytes` (throws `NeedMoreBytes` when the header runs past them). */
export function parseGgufHeader(file: string, bytes: Uint8Array, fileSize: number): GgufHeader {
  const c = new Cursor(file, bytes, fileSize);
  if (fileSize < 24) throw new FormatError(file, `not a GGUF file: ${fileSize} bytes, shorter than the 24-byte GGUF header`);
  const magic = c.u32("magic");
  if (magic !== GGUF_MAGIC) throw new FormatError(file, `not a GGUF file: magic 0x${magic.toString(16).padStart(8, "0")}, expected "GGUF"`);
  const version = c.u32("version");
  if (version === 0x03000000 || version === 0x02000000) throw new FormatError(file, "big-endian GGUF is not supported (little-endian only)");
  if (version !== 2 && version !== 3) throw new FormatError(file, `GGUF version ${version} is not supported (2 or 3)`);
  // Each tensor info takes at least 8 (name) + 4 (n_dims) + 4 (type) + 8 (offset) bytes; each KV 8 + 4.
  const tensorCount = c.size("tensor count", Math.floor(c.remainingInFile / 24));
  const kvCount = c.size("metadata key/value count", Math.floor(c.remainingInFile / 12));

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key #${i}`);
    if (metadata.has(key)) throw new FormatError(file, `metadata key '${key}' occurs more than once`);
    const type = c.u32(`type of metadata key '${key}'`);
    if (!isGgufType(type)) throw new FormatError(file, `metadata key '${key}': unknown value type ${type}`);
    metadata.set(key, readValue(c, type, `metadata key '${key}'`, 0));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al !== undefined) {
    if (al.type !== GgufType.UINT32) throw new FormatError(file, `general.alignment is ${GGUF_TYPE_NAMES[al.type]}, expected UINT32`);
    if (al.value === 0 || (al.value & (al.value - 1)) !== 0) throw new FormatError(file, `general.alignment ${al.value} is not a power of two`);
    alignment = al.value;
  }

  const raw: Array<Omit<GgufTensorInfo, "byteOffset"> & { offset: number }> = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`name of tensor #${i}`);
    const where = `tensor '${name}'`;
    if (names.has(name)) throw new FormatError(file, `${where} occurs more than once`);
    names.add(name);
    const nDims = c.u32(`${where} dimension count`);
    if (nDims < 1 || nDims > GGML_MAX_DIMS) throw new FormatError(file, `${where}: ${nDims} dimensions, expected 1 to ${GGML_MAX_DIMS}`);
    const ne: number[] = [];
    let n = 1;
    for (let d = 0; d < nDims; d++) {
      const v = c.u64(`${where} dimension ${d}`);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(file, `${where}: dimension ${d} is ${v}, too large`);
      ne.push(Number(v));
      n *= Number(v);
      if (!Number.isSafeInteger(n)) throw new FormatError(file, `${where}: dimensions [${ne.join(", ")}...] have too many elements`);
    }
    const ggmlType = c.u32(`${where} type`);
    const typeInfo = GGML_TYPES.get(ggmlType);
    if (!typeInfo) throw new FormatError(file, `${where}: unknown ggml type ${ggmlType}`);
    if (ne[0]! % typeInfo.blockSize !== 0) {
      throw new FormatError(file, `${where}: row size ${ne[0]} is not a multiple of the ${typeInfo.name} block size ${typeInfo.blockSize}`);
    }
    const offsetBig = c.u64(`${where} data offset`);
    if (offsetBig > BigInt(fileSize)) throw new FormatError(file, `${where}: data offset ${offsetBig} is past the end of the file (${fileSize} bytes)`);
    const offset = Number(offsetBig);
    if (offset % alignment !== 0) throw new FormatError(file, `${where}: data offset ${offset} is not a multiple of the alignment ${alignment}`);
    const byteLength = (n / typeInfo.blockSize) * typeInfo.typeSize;
    raw.push({ name, ne, shape: [...ne].reverse(), ggmlType, typeInfo, offset, byteLength });
  }

  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  const dataSize = fileSize - dataStart;
  if (dataSize < 0 && raw.length > 0) throw new FormatError(file, `the data section would start at byte ${dataStart}, past the end of the file (${fileSize} bytes)`);
  const tensors = raw.map(({ offset, ...t }) => {
    if (offset + t.byteLength > dataSize) {
      throw new FormatError(file, `tensor '${t.name}': ${t.typeInfo.name} [${t.shape.join(", ")}] needs bytes ${offset}..${offset + t.byteLength} of the data section, which has ${Math.max(0, dataSize)}`);
    }
    return { ...t, byteOffset: dataStart + offset };
  });
  checkOverlap(file, tensors);
  return { file, version, metadata, tensors, alignment, dataStart };
}

function readValue(c: Cursor, type: GgufType, where: string, depth: number): GgufValue {
  switch (type) {
    case GgufType.UINT8: return { type, value: c.u8(where) };
    case GgufType.INT8: return { type, value: c.i8(where) };
    case GgufType.UINT16: return { type, value: c.u16(where) };
    case GgufType.INT16: return { type, value: c.i16(where) };
    case GgufType.UINT32: return { type, value: c.u32(where) };
    case GgufType.INT32: return { type, value: c.i32(where) };
    case GgufType.FLOAT32: return { type, value: c.f32(where) };
    case GgufType.FLOAT64: return { type, value: c.f64(where) };
    case GgufType.UINT64: return { type, value: c.u64(where) };
    case GgufType.INT64: return { type, value: c.i64(where) };
    case GgufType.BOOL: {
      const b = c.u8(where);
      if (b > 1) throw new FormatError(c.file, `${where}: BOOL byte is ${b}, expected 0 or 1`);
      return { type, value: b === 1 };
    }
    case GgufType.STRING: return { type, value: c.string(where) };
    case GgufType.ARRAY: {
      const itemType = c.u32(`${where} array item type`);
      if (!isGgufType(itemType)) throw new FormatError(c.file, `${where}: unknown array item type ${itemType}`);
      if (itemType === GgufType.ARRAY && depth + 1 >= MAX_ARRAY_DEPTH) throw new FormatError(c.file, `${where}: arrays nested more than ${MAX_ARRAY_DEPTH} deep`);
      const minItem = GGUF_SCALAR_BYTES[itemType] ?? (itemType === GgufType.STRING ? 8 : 12);
      const count = c.size(`${where} array length`, Math.floor((c.remainingInFile - 8) / minItem));
      const value: GgufItem[] = new Array(count);
      for (let i = 0; i < count; i++) {
        const item = readValue(c, itemType, `${where}[${i}]`, depth + 1);
        value[i] = item.value;
      }
      return { type, itemType, value };
    }
  }
}

function checkOverlap(file: string, tensors: readonly GgufTensorInfo[]): void {
  const sorted = [...tensors].sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.byteOffset < prev.byteOffset + prev.byteLength) {
      throw new FormatError(file, `tensor '${cur.name}' (at byte ${cur.byteOffset}) overlaps tensor '${prev.name}' (bytes ${prev.byteOffset}..${prev.byteOffset + prev.byteLength})`);
    }
  }
}
