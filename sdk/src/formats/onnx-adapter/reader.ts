/**
 * Reads `.onnx_adapter` files. Every offset, vtable and vector length is checked against the buffer before it is
 * followed (the file is untrusted input), so a damaged file gives a FormatError naming what is wrong, never a
 * RangeError or a read past the end.
 */
import { readFile } from "node:fs/promises";
import { FormatError } from "../../errors.js";
import { itemsize } from "../../tensor/index.js";
import { ADAPTER_FIELDS, dtypeOfOnnxCode, FILE_IDENTIFIER, PARAMETER_FIELDS, type OnnxAdapterFile, type OnnxAdapterParameter } from "./schema.js";

/** Bounds-checked access to a FlatBuffer's tables and vectors. */
class FlatView {
  private readonly view: DataView;
  constructor(private readonly bytes: Uint8Array, private readonly file: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  fail(what: string): never {
    throw new FormatError(this.file, `not a valid .onnx_adapter file: ${what}`);
  }
  private need(at: number, length: number, what: string): void {
    if (!Number.isSafeInteger(at) || at < 0 || at + length > this.bytes.byteLength) this.fail(`${what} at byte ${at} (+${length}) lies outside the ${this.bytes.byteLength}-byte file`);
  }
  u32(at: number, what: string): number {
    this.need(at, 4, what);
    return this.view.getUint32(at, true);
  }
  /** The table whose soffset sits at `at`: a reader of its fields (absent fields read as undefined). */
  table(at: number, what: string): (field: number) => number | undefined {
    this.need(at, 4, what);
    if (at % 4 !== 0) this.fail(`${what} at byte ${at} is not 4-byte aligned`);
    const vt = at - this.view.getInt32(at, true);
    this.need(vt, 4, `${what}'s vtable`);
    const vtSize = this.view.getUint16(vt, true);
    const tableSize = this.view.getUint16(vt + 2, true);
    if (vtSize < 4 || vtSize % 2 !== 0) this.fail(`${what}'s vtable size ${vtSize}`);
    this.need(vt, vtSize, `${what}'s vtable`);
    this.need(at, tableSize, what);
    return (field) => {
      if (4 + 2 * field >= vtSize) return undefined;
      const off = this.view.getUint16(vt + 4 + 2 * field, true);
      if (off === 0) return undefined;
      if (off + 4 > tableSize) this.fail(`${what} field ${field} at offset ${off} lies outside the table (${tableSize} bytes)`);
      return at + off;
    };
  }
  /** Follow the forward offset stored at `at`. */
  deref(at: number, what: string): number {
    return at + this.u32(at, what);
  }
  i32(at: number, what: string): number {
    this.need(at, 4, what);
    return this.view.getInt32(at, true);
  }
  /** A vector at `at` (its length prefix) of `elementSize`-byte elements: [first element position, count]. */
  vector(at: number, elementSize: number, what: string): [number, number] {
    const count = this.u32(at, `${what} length`);
    this.need(at + 4, count * elementSize, what);
    return [at + 4, count];
  }
  i64(at: number, what: string): bigint {
    this.need(at, 8, what);
    return this.view.getBigInt64(at, true);
  }
  slice(at: number, length: number): Uint8Array {
    return this.bytes.subarray(at, at + length);
  }
}

/** Decode a whole file held in memory. Parameter data are views into `bytes`. */
export function decodeOnnxAdapter(bytes: Uint8Array, file = "<bytes>"): OnnxAdapterFile {
  // Declared with its type so TypeScript narrows after fb.fail(), which never returns.
  const fb: FlatView = new FlatView(bytes, file);
  if (bytes.byteLength < 8) fb.fail(`${bytes.byteLength} bytes is too short for a FlatBuffer header`);
  const ident = new TextDecoder().decode(bytes.subarray(4, 8));
  if (ident !== FILE_IDENTIFIER) fb.fail(`file identifier '${ident.replace(/[^\x20-\x7e]/g, "?")}', expected '${FILE_IDENTIFIER}'`);
  const rootAt = fb.deref(0, "root offset");
  const root = fb.table(rootAt, "Adapter table");
  const int = (field: number, what: string): number => {
    const at = root(field);
    return at === undefined ? 0 : fb.i32(at, what);
  };
  const paramsField = root(ADAPTER_FIELDS.parameters);
  const parameters: OnnxAdapterParameter[] = [];
  if (paramsField !== undefined) {
    const [first, count] = fb.vector(fb.deref(paramsField, "parameters offset"), 4, "parameters vector");
    const utf8 = new TextDecoder("utf-8", { fatal: true });
    for (let i = 0; i < count; i++) {
      const what = `parameters[${i}]`;
      const p = fb.table(fb.deref(first + 4 * i, `${what} offset`), what);
      const nameAt = p(PARAMETER_FIELDS.name);
      if (nameAt === undefined) fb.fail(`${what} has no name`);
      const [nameStart, nameLength] = fb.vector(fb.deref(nameAt, `${what}.name offset`), 1, `${what}.name`);
      let name: string;
      try {
        name = utf8.decode(fb.slice(nameStart, nameLength));
      } catch {
        fb.fail(`${what}.name is not UTF-8`);
      }
      const codeAt = p(PARAMETER_FIELDS.dataType);
      const code = codeAt === undefined ? 0 : fb.i32(codeAt, `${what}.data_type`);
      const dtype = dtypeOfOnnxCode(code);
      if (dtype === undefined) fb.fail(`parameter '${name}' has data_type ${code}, which loraport does not read (numeric tensors only)`);
      const dimsAt = p(PARAMETER_FIELDS.dims);
      const dims: number[] = [];
      if (dimsAt !== undefined) {
        const [d0, rank] = fb.vector(fb.deref(dimsAt, `${what}.dims offset`), 8, `'${name}'.dims`);
        if (rank > 64) fb.fail(`parameter '${name}' has ${rank} dimensions (at most 64)`);
        for (let k = 0; k < rank; k++) {
          const d = fb.i64(d0 + 8 * k, `'${name}'.dims[${k}]`);
          if (d < 0n || d > BigInt(Number.MAX_SAFE_INTEGER)) fb.fail(`parameter '${name}' dims[${k}] = ${d}`);
          dims.push(Number(d));
        }
      }
      const dataAt = p(PARAMETER_FIELDS.rawData);
      const [dataStart, dataLength] = dataAt === undefined ? [0, 0] : fb.vector(fb.deref(dataAt, `${what}.raw_data offset`), 1, `'${name}'.raw_data`);
      const expected = dims.reduce((a, d) => a * d, 1) * itemsize(dtype);
      if (dataLength !== expected) fb.fail(`parameter '${name}' has ${dataLength} data bytes, expected ${expected} for ${dtype} [${dims.join(", ")}]`);
      parameters.push({ name, dtype, dims, data: fb.slice(dataStart, dataLength) });
    }
  }
  return {
    formatVersion: int(ADAPTER_FIELDS.formatVersion, "format_version"),
    adapterVersion: int(ADAPTER_FIELDS.adapterVersion, "adapter_version"),
    modelVersion: int(ADAPTER_FIELDS.modelVersion, "model_version"),
    parameters,
  };
}

/** Read and decode `path` (adapter files are small: factors, not base weights). */
export async function readOnnxAdapter(path: string): Promise<OnnxAdapterFile> {
  return decodeOnnxAdapter(new Uint8Array(await readFile(path)), path);
}
