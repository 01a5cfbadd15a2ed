/**
 * Byte-level builders for hostile test files: a pickle assembler, a zip writer (stored or deflated entries,
 * directory entries that may share data) and the torch.save layout on top of them. Used by the regression
 * tests and the fuzzer to make the small files that describe huge work; real checkpoints come from torch.
 */
import { crc32, deflateRawSync } from "node:zlib";

/** Pickle opcodes used here (protocol 2–4 binary opcodes). */
export const OP = {
  PROTO: 0x80, STOP: 0x2e, MARK: 0x28, POP: 0x30, POP_MARK: 0x31, DUP: 0x32, NONE: 0x4e, NEWTRUE: 0x88, NEWFALSE: 0x89,
  BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d, LONG1: 0x8a, BINFLOAT: 0x47, BINUNICODE: 0x58, SHORT_BINUNICODE: 0x8c,
  SHORT_BINBYTES: 0x43, EMPTY_TUPLE: 0x29, TUPLE: 0x74, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87, EMPTY_LIST: 0x5d,
  LIST: 0x6c, APPEND: 0x61, APPENDS: 0x65, EMPTY_DICT: 0x7d, DICT: 0x64, SETITEM: 0x73, SETITEMS: 0x75, EMPTY_SET: 0x8f,
  ADDITEMS: 0x90, FROZENSET: 0x91, BINGET: 0x68, LONG_BINGET: 0x6a, BINPUT: 0x71, LONG_BINPUT: 0x72, MEMOIZE: 0x94,
  GLOBAL: 0x63, STACK_GLOBAL: 0x93, REDUCE: 0x52, NEWOBJ: 0x81, BUILD: 0x62, BINPERSID: 0x51,
} as const;

/** Every opcode the reader knows (for opcode-level mutations). */
export const ALL_OPS: readonly number[] = Object.values(OP);

/** Appends pickle opcodes to a growable byte buffer. */
export class PickleWriter {
  private buf = new Uint8Array(1 << 12);
  private len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  raw(...bytes: number[]): this {
    this.ensure(bytes.length);
    for (const b of bytes) this.buf[this.len++] = b;
    return this;
  }

  bytesRaw(bytes: Uint8Array): this {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  /** `count` copies of `bytes`, without building a JS array of them. */
  repeat(bytes: readonly number[], count: number): this {
    this.ensure(bytes.length * count);
    const start = this.len;
    for (let i = 0; i < bytes.length; i++) this.buf[this.len++] = bytes[i]!;
    let filled = bytes.length;
    const total = bytes.length * count;
    while (filled < total) {
      const n = Math.min(filled, total - filled);
      this.buf.copyWithin(start + filled, start, start + n);
      filled += n;
    }
    this.len = start + total;
    return this;
  }

  op(code: number): this {
    return this.raw(code);
  }

  proto(v = 2): this {
    return this.raw(OP.PROTO, v);
  }

  int(n: number): this {
    if (n >= 0 && n < 256) return this.raw(OP.BININT1, n);
    if (n >= 0 && n < 65536) return this.raw(OP.BININT2, n & 0xff, n >> 8);
    if (n >= -(2 ** 31) && n < 2 ** 31) return this.raw(OP.BININT, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff);
    // LONG1, 8 bytes two's complement
    const b = new DataView(new ArrayBuffer(8));
    b.setBigInt64(0, BigInt(n), true);
    return this.raw(OP.LONG1, 8, ...new Uint8Array(b.buffer));
  }

  /** BINUNICODE, as protocol 2 writes strings (torch's weights-only unpickler has no SHORT_BINUNICODE). */
  str(s: string): this {
    const b = Buffer.from(s, "utf8");
    this.raw(OP.BINUNICODE, b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24);
    return this.raw(...b);
  }

  global(module: string, name: string): this {
    return this.raw(OP.GLOBAL, ...Buffer.from(`${module}\n${name}\n`, "latin1"));
  }

  put(i: number): this {
    return i < 256 ? this.raw(OP.BINPUT, i) : this.raw(OP.LONG_BINPUT, i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, i >>> 24);
  }

  get(i: number): this {
    return i < 256 ? this.raw(OP.BINGET, i) : this.raw(OP.LONG_BINGET, i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, i >>> 24);
  }

  /** A tuple of ints (torch.Size / stride). */
  ints(values: readonly number[]): this {
    this.op(OP.MARK);
    for (const v of values) this.int(v);
    return this.op(OP.TUPLE);
  }

  /**
   * `torch._utils._rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())`, as
   * torch.save writes it; the storage is `<storageClass>` at key `key` with `numel` elements.
   */
  tensor(key: string, numel: number, offset: number, size: readonly number[], stride: readonly number[], storageClass = "FloatStorage"): this {
    this.global("torch._utils", "_rebuild_tensor_v2").op(OP.MARK);
    this.op(OP.MARK).str("storage").global("torch", storageClass).str(key).str("cpu").int(numel).op(OP.TUPLE).op(OP.BINPERSID);
    this.int(offset).ints(size).ints(stride).op(OP.NEWFALSE);
    this.global("collections", "OrderedDict").op(OP.EMPTY_TUPLE).op(OP.REDUCE);
    return this.op(OP.TUPLE).op(OP.REDUCE);
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

export interface ZipInput {
  readonly name: string;
  readonly data: Uint8Array;
  /** 0 stored (default), 8 deflated. */
  readonly method?: 0 | 8;
  /** Pre-deflated bytes for method 8 with the true `size`/`crc` (for bombs built without the whole output in memory). */
  readonly deflated?: { bytes: Uint8Array; size: number; crc: number };
}

/** A zip archive; `aliases` adds directory entries (new names) pointing at an earlier entry's local data. */
export function zipArchive(inputs: readonly ZipInput[], aliases: ReadonlyArray<{ name: string; of: string }> = []): Uint8Array {
  const locals: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  const info = new Map<string, { offset: number; method: number; crc: number; csize: number; size: number }>();
  let offset = 0;
  const centralEntry = (name: Buffer, e: { offset: number; method: number; crc: number; csize: number; size: number }) => {
    const c = Buffer.alloc(46 + name.length);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(20, 4);
    c.writeUInt16LE(20, 6);
    c.writeUInt16LE(e.method, 10);
    c.writeUInt32LE(e.crc, 16);
    c.writeUInt32LE(e.csize, 20);
    c.writeUInt32LE(e.size, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt32LE(e.offset, 42);
    name.copy(c, 46);
    central.push(c);
  };
  for (const z of inputs) {
    const name = Buffer.from(z.name, "utf8");
    const method = z.method ?? 0;
    const body = z.deflated?.bytes ?? (method === 8 ? deflateRawSync(z.data) : z.data);
    const size = z.deflated?.size ?? z.data.byteLength;
    const crc = z.deflated?.crc ?? crc32(z.data) >>> 0;
    const h = Buffer.alloc(30 + name.length);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(20, 4);
    h.writeUInt16LE(method, 8);
    h.writeUInt32LE(crc, 14);
    h.writeUInt32LE(body.byteLength, 18);
    h.writeUInt32LE(size, 22);
    h.writeUInt16LE(name.length, 26);
    name.copy(h, 30);
    const e = { offset, method, crc, csize: body.byteLength, size };
    info.set(z.name, e);
    locals.push(h, body);
    offset += h.length + body.byteLength;
    centralEntry(name, e);
  }
  for (const a of aliases) centralEntry(Buffer.from(a.name, "utf8"), info.get(a.of)!);
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const count = inputs.length + aliases.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Math.min(count, 0xffff), 8);
  end.writeUInt16LE(Math.min(count, 0xffff), 10);
  end.writeUInt32LE(cdSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...central, end]);
}

/** A torch.save-layout archive: `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>` storages. */
export function torchZip(
  pickle: Uint8Array,
  storages: Readonly<Record<string, Uint8Array | ZipInput["deflated"]>> = {},
  options: { compressPickle?: boolean; aliases?: ReadonlyArray<{ name: string; of: string }> } = {},
): Uint8Array {
  const inputs: ZipInput[] = [
    { name: "archive/data.pkl", data: pickle, method: options.compressPickle ? 8 : 0 },
    { name: "archive/byteorder", data: Buffer.from("little") },
    { name: "archive/version", data: Buffer.from("3\n") },
  ];
  for (const [key, s] of Object.entries(storages)) {
    if (s instanceof Uint8Array) inputs.push({ name: `archive/data/${key}`, data: s });
    else if (s) inputs.push({ name: `archive/data/${key}`, data: new Uint8Array(0), method: 8, deflated: s });
  }
  return zipArchive(inputs, options.aliases);
}

/**
 * Raw-deflated zeros of `size` bytes, one 1 MiB chunk at a time so the output never exists in memory. Each chunk
 * is its own deflate run ending in a sync flush (non-final blocks that reference only themselves), so their
 * concatenation plus one final empty block is a valid stream.
 */
export function deflatedZeros(size: number): { bytes: Uint8Array; size: number; crc: number } {
  const chunk = new Uint8Array(Math.min(size, 1 << 20));
  const block = deflateRawSync(chunk, { finishFlush: 2 /* Z_SYNC_FLUSH */, level: 9 });
  const parts: Buffer[] = [];
  let crc = 0;
  for (let done = 0; done < size; done += chunk.length) {
    const n = Math.min(chunk.length, size - done);
    crc = crc32(chunk.subarray(0, n), crc);
    parts.push(n === chunk.length ? block : deflateRawSync(chunk.subarray(0, n), { finishFlush: 2, level: 9 }));
  }
  parts.push(deflateRawSync(new Uint8Array(0), { level: 9 }));
  return { bytes: Buffer.concat(parts), size, crc: crc >>> 0 };
}
