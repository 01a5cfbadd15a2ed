/**
 * A bounds-checked little-endian reader over the bytes of a GGUF header. Every read checks the bytes it
 * needs against what is there: past the buffer but inside the file it asks for more bytes (`NeedMoreBytes`),
 * past the file it is a FormatError naming what was being read.
 */
import { FormatError } from "../../errors.js";

/** Thrown when the header continues past the bytes read so far (the file is longer): read more and retry. */
export class NeedMoreBytes extends Error {
  constructor(readonly atLeast: number) {
    super(`need at least ${atLeast} bytes`);
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(readonly file: string, readonly bytes: Uint8Array, readonly fileSize: number) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Bytes left in the file after the cursor. */
  get remainingInFile(): number {
    return this.fileSize - this.pos;
  }

  need(n: number, what: string): void {
    if (this.pos + n > this.fileSize) {
      throw new FormatError(this.file, `${what} at byte ${this.pos} needs ${n} bytes, but the file ends at byte ${this.fileSize}`);
    }
    if (this.pos + n > this.bytes.byteLength) throw new NeedMoreBytes(this.pos + n);
  }

  u8(what: string): number { this.need(1, what); return this.view.getUint8(this.pos++); }
  i8(what: string): number { this.need(1, what); return this.view.getInt8(this.pos++); }
  u16(what: string): number { this.need(2, what); const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16(what: string): number { this.need(2, what); const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32(what: string): number { this.need(4, what); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(what: string): number { this.need(4, what); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  f32(what: string): number { this.need(4, what); const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64(what: string): number { this.need(8, what); const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64(what: string): bigint { this.need(8, what); const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }
  i64(what: string): bigint { this.need(8, what); const v = this.view.getBigInt64(this.pos, true); this.pos += 8; return v; }

  /** A u64 that must fit a JS safe integer and be at most `max` (a count or a length). */
  size(what: string, max: number): number {
    const n = this.u64(what);
    if (n > BigInt(max)) throw new FormatError(this.file, `${what} is ${n}, more than the ${max} the rest of the file can hold`);
    return Number(n);
  }

  /** A GGUF string: u64 byte length, then UTF-8 bytes. */
  string(what: string): string {
    const len = this.size(`${what} (string length)`, this.remainingInFile - 8);
    this.need(len, what);
    const slice = this.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    try {
      return utf8.decode(slice);
    } catch {
      throw new FormatError(this.file, `${what} is not valid UTF-8`);
    }
  }
}
