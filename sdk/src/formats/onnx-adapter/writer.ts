/**
 * Writes `.onnx_adapter` files. The FlatBuffer is laid out front to back (root table, its vtable, the parameter
 * vector, then each parameter's table, vtable, name, dims and data), so every unsigned offset points forward as the
 * format requires, and every scalar and vector sits at its natural alignment (raw_data and dims at 8) from the
 * buffer's start, which is what ONNX Runtime's FlatBuffers verifier checks.
 */
import { FormatError } from "../../errors.js";
import { itemsize } from "../../tensor/index.js";
import { writeAll, writeFileAtomic } from "../atomic-file.js";
import { ADAPTER_FIELDS, FILE_IDENTIFIER, FORMAT_VERSION, onnxDataType, PARAMETER_FIELDS, type OnnxAdapterParameter } from "./schema.js";

export interface OnnxAdapterWriteOptions {
  /** Stored as `adapter_version` (default 1). */
  readonly adapterVersion?: number;
  /** Stored as `model_version` (default 1). */
  readonly modelVersion?: number;
}

/** Bytes appended in order, each block at a chosen alignment; positions are final as soon as they are handed out. */
class Layout {
  private readonly blocks: { at: number; bytes: Uint8Array }[] = [];
  size = 0;
  /** Reserve `length` bytes at `align`, returning their position and a view to fill. */
  reserve(length: number, align: number): { at: number; view: DataView; bytes: Uint8Array } {
    const at = Math.ceil(this.size / align) * align;
    const bytes = new Uint8Array(length);
    this.blocks.push({ at, bytes });
    this.size = at + length;
    return { at, view: new DataView(bytes.buffer), bytes };
  }
  /** Concatenate the blocks (zero padding between them). */
  finish(): Uint8Array {
    const out = new Uint8Array(Math.ceil(this.size / 8) * 8);
    for (const b of this.blocks) out.set(b.bytes, b.at);
    return out;
  }
}

/** A table of 4-byte fields only (both of this schema's tables are): soffset + fields, then its vtable. */
function table(layout: Layout, fieldCount: number): { at: number; field(i: number): number; view: DataView } {
  const t = layout.reserve(4 + 4 * fieldCount, 4);
  const vt = layout.reserve(4 + 2 * fieldCount, 2);
  vt.view.setUint16(0, 4 + 2 * fieldCount, true);
  vt.view.setUint16(2, 4 + 4 * fieldCount, true);
  for (let i = 0; i < fieldCount; i++) vt.view.setUint16(4 + 2 * i, 4 + 4 * i, true);
  // soffset: the vtable lies at table − soffset (here after the table, so the value is negative).
  t.view.setInt32(0, t.at - vt.at, true);
  return { at: t.at, view: t.view, field: (i) => t.at + 4 + 4 * i };
}

/** Store at `fieldPos` (inside block `view` starting at `base`) the forward offset to `target`. */
function offsetTo(view: DataView, base: number, fieldPos: number, target: number): void {
  view.setUint32(fieldPos - base, target - fieldPos, true);
}

function checkParameter(p: OnnxAdapterParameter, i: number): number {
  const code = onnxDataType(p.dtype);
  const where = `parameters[${i}] '${p.name}'`;
  if (code === undefined) throw new FormatError("onnx_adapter", `${where}: dtype ${p.dtype} has no ONNX TensorDataType`);
  if (!p.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new FormatError("onnx_adapter", `${where}: dims must be non-negative integers, got [${p.dims.join(", ")}]`);
  const expected = p.dims.reduce((a, d) => a * d, 1) * itemsize(p.dtype);
  if (p.data.byteLength !== expected) throw new FormatError("onnx_adapter", `${where}: ${p.data.byteLength} data bytes, expected ${expected} for ${p.dtype} [${p.dims.join(", ")}]`);
  return code;
}

/**
 * A vector of `count` elements of `elementSize` bytes whose elements start at a multiple of `align` (the 4-byte
 * length sits just before them); returns the position of the length, which is what offsets point at.
 */
function vector(layout: Layout, count: number, elementSize: number, align: number, fill: (body: DataView, bytes: Uint8Array) => void): number {
  const lengthAt = Math.ceil((layout.size + 4) / align) * align - 4;
  layout.reserve(lengthAt - layout.size, 1);
  const len = layout.reserve(4, 4);
  len.view.setUint32(0, count, true);
  const body = layout.reserve(count * elementSize, 1);
  fill(body.view, body.bytes);
  return len.at;
}

/** The whole file as bytes. */
export function encodeOnnxAdapter(parameters: readonly OnnxAdapterParameter[], options: OnnxAdapterWriteOptions = {}): Uint8Array {
  const names = new Set<string>();
  const codes = parameters.map((p, i) => {
    if (names.has(p.name)) throw new FormatError("onnx_adapter", `parameters[${i}]: name '${p.name}' appears twice`);
    names.add(p.name);
    return checkParameter(p, i);
  });
  const layout = new Layout();
  const head = layout.reserve(8, 8);
  new TextEncoder().encodeInto(FILE_IDENTIFIER, head.bytes.subarray(4));
  const root = table(layout, 4);
  head.view.setUint32(0, root.at, true);
  const set = (t: { at: number; view: DataView; field(i: number): number }, field: number, value: number): void => t.view.setInt32(t.field(field) - t.at, value, true);
  set(root, ADAPTER_FIELDS.formatVersion, FORMAT_VERSION);
  set(root, ADAPTER_FIELDS.adapterVersion, options.adapterVersion ?? 1);
  set(root, ADAPTER_FIELDS.modelVersion, options.modelVersion ?? 1);
  const vec = layout.reserve(4 + 4 * parameters.length, 4);
  vec.view.setUint32(0, parameters.length, true);
  offsetTo(root.view, root.at, root.field(ADAPTER_FIELDS.parameters), vec.at);
  const utf8 = new TextEncoder();
  parameters.forEach((p, i) => {
    const t = table(layout, 4);
    offsetTo(vec.view, vec.at, vec.at + 4 + 4 * i, t.at);
    set(t, PARAMETER_FIELDS.dataType, codes[i]!);
    const name = utf8.encode(p.name);
    // Strings are vectors of bytes with a NUL after the last one.
    const nameAt = vector(layout, name.byteLength, 1, 4, (_v, b) => b.set(name));
    layout.reserve(1, 1);
    offsetTo(t.view, t.at, t.field(PARAMETER_FIELDS.name), nameAt);
    const dimsAt = vector(layout, p.dims.length, 8, 8, (v) => p.dims.forEach((d, k) => v.setBigInt64(k * 8, BigInt(d), true)));
    offsetTo(t.view, t.at, t.field(PARAMETER_FIELDS.dims), dimsAt);
    const dataAt = vector(layout, p.data.byteLength, 1, 8, (_v, b) => b.set(p.data));
    offsetTo(t.view, t.at, t.field(PARAMETER_FIELDS.rawData), dataAt);
  });
  return layout.finish();
}

/** Write `parameters` to `path` atomically (temp file, fsync, rename). */
export async function writeOnnxAdapter(path: string, parameters: readonly OnnxAdapterParameter[], options: OnnxAdapterWriteOptions = {}): Promise<number> {
  const bytes = encodeOnnxAdapter(parameters, options);
  await writeFileAtomic(path, async (fh) => void (await writeAll(fh, bytes, 0)));
  return bytes.byteLength;
}
