/** Little-endian byte building for GGUF headers: scalars, strings and typed arrays into one growing buffer. */
import { FormatError } from "../../errors.js";
import { GGUF_TYPE_NAMES, GgufType } from "./constants.js";
import type { GgufItem, GgufValue } from "./value.js";

const utf8 = new TextEncoder();

export class ByteBuilder {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private grow(n: number): void {
    if (this.length + n <= this.buf.byteLength) return;
    let cap = this.buf.byteLength * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void { this.grow(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number): void { this.grow(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number): void { this.grow(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number): void { this.grow(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number): void { this.grow(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.grow(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.grow(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number): void { this.grow(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: bigint | number): void { this.grow(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  i64(v: bigint | number): void { this.grow(8); this.view.setBigInt64(this.length, BigInt(v), true); this.length += 8; }
  string(s: string): void {
    const b = utf8.encode(s);
    this.u64(b.byteLength);
    this.grow(b.byteLength);
    this.buf.set(b, this.length);
    this.length += b.byteLength;
  }
  zeros(n: number): void { this.grow(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }

  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

const INT_RANGE: Partial<Record<GgufType, readonly [number, number]>> = {
  [GgufType.UINT8]: [0, 0xff], [GgufType.INT8]: [-0x80, 0x7f], [GgufType.UINT16]: [0, 0xffff], [GgufType.INT16]: [-0x8000, 0x7fff],
  [GgufType.UINT32]: [0, 0xffffffff], [GgufType.INT32]: [-0x80000000, 0x7fffffff],
};

/** Append one value's bytes (without its type tag, which the caller writes). `where` names it in errors. */
export function encodeValue(b: ByteBuilder, type: GgufType, value: GgufValue["value"], where: string, itemType?: GgufType): void {
  const bad = (expected: string): never => {
    throw new FormatError(where, `${GGUF_TYPE_NAMES[type]} value ${JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))?.slice(0, 80)} is not ${expected}`);
  };
  const range = INT_RANGE[type];
  if (range) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < range[0] || value > range[1]) bad(`an integer in [${range[0]}, ${range[1]}]`);
  }
  switch (type) {
    case GgufType.UINT8: b.u8(value as number); return;
    case GgufType.INT8: b.i8(value as number); return;
    case GgufType.UINT16: b.u16(value as number); return;
    case GgufType.INT16: b.i16(value as number); return;
    case GgufType.UINT32: b.u32(value as number); return;
    case GgufType.INT32: b.i32(value as number); return;
    case GgufType.FLOAT32:
    case GgufType.FLOAT64:
      if (typeof value !== "number") bad("a number");
      if (type === GgufType.FLOAT32) b.f32(value as number); else b.f64(value as number);
      return;
    case GgufType.UINT64:
    case GgufType.INT64:
      if (typeof value !== "bigint") bad("a bigint");
      if (type === GgufType.UINT64) b.u64(value as bigint); else b.i64(value as bigint);
      return;
    case GgufType.BOOL:
      if (typeof value !== "boolean") bad("a boolean");
      b.u8(value ? 1 : 0);
      return;
    case GgufType.STRING:
      if (typeof value !== "string") bad("a string");
      b.string(value as string);
      return;
    case GgufType.ARRAY: {
      if (!Array.isArray(value) || itemType === undefined) bad("an array with an item type");
      const items = value as readonly GgufItem[];
      b.u32(itemType!);
      b.u64(items.length);
      // Nested arrays carry their own item type; loraport never writes them.
      if (itemType === GgufType.ARRAY) throw new FormatError(where, "nested arrays are not written");
      for (let i = 0; i < items.length; i++) encodeValue(b, itemType!, items[i] as GgufValue["value"], `${where}[${i}]`);
      return;
    }
  }
}
