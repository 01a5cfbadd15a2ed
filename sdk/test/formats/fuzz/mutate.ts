/**
 * Seeded mutations of seed files. Case `i` of a run with seed `s` is a pure function of (s, i, the seeds), so the
 * parent can rebuild any case a child reported (reproducers) without the child sending bytes. Operators:
 * byte flips, truncation, safetensors header JSON edits, zip directory edits, pickle opcode edits (with the zip
 * rebuilt and CRCs fixed, so the edited pickle is executed), storage edits, and hostile generators (builders.ts).
 */
import { ALL_OPS, OP, PickleWriter, deflatedZeros, torchZip, zipArchive, type ZipInput } from "./builders.js";

export interface Seed {
  readonly name: string;
  readonly kind: "safetensors" | "torch";
  readonly bytes: Uint8Array;
}

export interface FuzzCase {
  readonly index: number;
  readonly seed: string;
  readonly mutation: string;
  readonly bytes: Uint8Array;
}

/** xorshift32 with a splitmix-style seed mix: cheap, deterministic, good enough for choosing mutations. */
export function rng(seed: number): () => number {
  let x = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;

export function makeCase(seeds: readonly Seed[], runSeed: number, index: number): FuzzCase {
  const r = rng((runSeed * 1_000_003 + index) >>> 0);
  // A few per cent hostile generators; the rest mutate a seed.
  if (r() < 0.004) {
    const [mutation, bytes] = hostile(r);
    return { index, seed: "(generated)", mutation, bytes };
  }
  const seed = pick(r, seeds);
  const [mutation, bytes] = seed.kind === "safetensors" ? mutateSafetensors(r, seed.bytes) : mutateTorch(r, seed.bytes);
  return { index, seed: seed.name, mutation, bytes };
}

function flipBytes(r: Rand, src: Uint8Array, lo = 0, hi = src.length): Uint8Array {
  const m = src.slice();
  const k = 1 + int(r, 4);
  for (let j = 0; j < k && hi > lo; j++) {
    const at = lo + int(r, hi - lo);
    m[at] = r() < 0.5 ? int(r, 256) : m[at]! ^ (1 << int(r, 8));
  }
  return m;
}

function truncate(r: Rand, src: Uint8Array): Uint8Array {
  return src.slice(0, int(r, src.length));
}

// ---- safetensors -------------------------------------------------------------------------------

function mutateSafetensors(r: Rand, src: Uint8Array): [string, Uint8Array] {
  const n = Number(new DataView(src.buffer, src.byteOffset, 8).getBigUint64(0, true));
  const choice = r();
  if (choice < 0.25) return ["byte flips in header", flipBytes(r, src, 0, Math.min(src.length, 8 + n))];
  if (choice < 0.32) return ["byte flips anywhere", flipBytes(r, src)];
  if (choice < 0.4) return ["truncation", truncate(r, src)];
  if (choice < 0.45) return ["data section resized", resizeData(r, src, 8 + n)];
  return headerEdit(r, src, n);
}

function resizeData(r: Rand, src: Uint8Array, dataStart: number): Uint8Array {
  const delta = int(r, 17) - 8;
  if (delta < 0) return src.slice(0, Math.max(dataStart, src.length + delta));
  const out = new Uint8Array(src.length + delta);
  out.set(src);
  return out;
}

/** Re-serialise a header (optionally with a wrong length) in front of the original data section. */
function withHeader(text: string, data: Uint8Array, lengthDelta = 0): Uint8Array {
  const h = Buffer.from(text, "utf8");
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(Math.max(0, h.length + lengthDelta)), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function deep(r: Rand): string {
  const d = pick(r, [100, 126, 127, 128, 500, 5000, 20_000, 100_000]);
  const open = r() < 0.5 ? "[" : '{"k":';
  const close = open === "[" ? "]" : "}";
  return open.repeat(d) + close.repeat(d);
}

function randomValue(r: Rand): unknown {
  return pick(r, [null, true, -1, 0, 1.5, 2 ** 53, 1e300, "x", "F32", "", [], [1, 2], {}, { a: 1 }, [-1], [2 ** 40, 2 ** 40], "\u0000"]);
}

function headerEdit(r: Rand, src: Uint8Array, n: number): [string, Uint8Array] {
  const text = Buffer.from(src.subarray(8, 8 + n)).toString("utf8");
  const data = src.subarray(8 + n);
  const header = JSON.parse(text) as Record<string, Record<string, unknown>>;
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const name = names.length ? pick(r, names) : "x";
  const entry = header[name] ?? {};
  const c = int(r, 14);
  switch (c) {
    case 0: entry["dtype"] = pick(r, ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "f32", "F99", "", 7, null]); break;
    case 1: entry["shape"] = r() < 0.5 ? randomValue(r) : [...((entry["shape"] as number[]) ?? []), pick(r, [0, 1, 2, 3, 1e9])]; break;
    case 2: {
      const o = (entry["data_offsets"] as number[] | undefined) ?? [0, 0];
      entry["data_offsets"] = r() < 0.3 ? randomValue(r) : [o[0]! + int(r, 9) - 4, o[1]! + int(r, 9) - 4];
      break;
    }
    case 3: delete header[name]; break;
    case 4: header[`extra.${int(r, 100)}`] = { dtype: "F32", shape: [int(r, 4)], data_offsets: [int(r, 64), int(r, 64)] }; break;
    case 5: {
      // Deep nesting in a field, kept as raw text (JSON.stringify of the value would be what we test against).
      const field = pick(r, ["dtype", "shape", "data_offsets", "zz"]);
      const raw = JSON.stringify(header).replace(`${JSON.stringify(name)}:{`, `${JSON.stringify(name)}:{${JSON.stringify(field)}:${deep(r)},`);
      return [`deep nesting in ${field}`, withHeader(raw, data)];
    }
    case 6: header["__metadata__"] = r() < 0.5 ? ({ k: randomValue(r) } as Record<string, unknown>) : (randomValue(r) as Record<string, unknown>); break;
    case 7: {
      const prefix = pick(r, [" ", "   ", "\t", "\n", "\r\n", "\uFEFF", "\u00A0", "\u000B", "\f", "\u0000"]);
      return [`header prefixed with ${JSON.stringify(prefix)}`, withHeader(prefix + text, data)];
    }
    case 8: return ["trailing bytes after the JSON", withHeader(text.trimEnd() + pick(r, ["   ", "\n", "\u0000", "x", "}", ",", "\uFEFF"]), data)];
    case 9: return ["header length prefix off", withHeader(text, data, pick(r, [-9, -2, -1, 1, 2, 8, 1 << 20, 2 ** 40]))];
    case 10: {
      const dup = JSON.stringify(header).replace(/^\{/, `{${JSON.stringify(name)}:${JSON.stringify(entry)},`);
      return ["duplicate tensor name", withHeader(dup, data)];
    }
    case 11: return ["header not an object", withHeader(JSON.stringify(randomValue(r)), data)];
    case 12: {
      // Many entries or a huge name: headers that are large for their file.
      const big: Record<string, unknown> = { ...header };
      if (r() < 0.5) big[`n${"x".repeat(int(r, 50_000))}`] = { dtype: "F32", shape: [0], data_offsets: [0, 0] };
      else for (let i = 0; i < 500; i++) big[`e${i}`] = { dtype: "F32", shape: [0], data_offsets: [0, 0] };
      return ["large header", withHeader(JSON.stringify(big), data)];
    }
    default: entry[pick(r, ["dtype", "shape", "data_offsets"])] = randomValue(r);
  }
  if (names.length && c !== 3) header[name] = entry;
  return [`header edit ${c}`, withHeader(JSON.stringify(header), data)];
}

// ---- torch zip ---------------------------------------------------------------------------------

interface RawEntry {
  name: string;
  data: Uint8Array;
}

/** The stored entries of a (seed) zip, read through its central directory. */
export function zipEntries(zip: Uint8Array): RawEntry[] {
  const dv = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let eocd = zip.length - 22;
  while (eocd >= 0 && dv.getUint32(eocd, true) !== 0x06054b50) eocd--;
  const count = dv.getUint16(eocd + 10, true);
  let p = dv.getUint32(eocd + 16, true);
  const out: RawEntry[] = [];
  for (let i = 0; i < count; i++) {
    const size = dv.getUint32(p + 20, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    const local = dv.getUint32(p + 42, true);
    const name = Buffer.from(zip.subarray(p + 46, p + 46 + nameLen)).toString("utf8");
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    out.push({ name, data: zip.slice(start, start + size) });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

function mutateTorch(r: Rand, src: Uint8Array): [string, Uint8Array] {
  const choice = r();
  if (choice < 0.15) return ["byte flips anywhere", flipBytes(r, src)];
  if (choice < 0.22) return ["truncation", truncate(r, src)];
  if (choice < 0.4) return zipDirectoryEdit(r, src);
  const entries = zipEntries(src);
  const pkl = entries.find((e) => e.name.endsWith("/data.pkl"))!;
  if (choice < 0.85) {
    const [what, edited] = pickleEdit(r, pkl.data);
    pkl.data = edited;
    return [`pickle ${what}`, rebuild(r, entries)];
  }
  const storages = entries.filter((e) => e.name.includes("/data/"));
  if (storages.length && r() < 0.7) {
    const s = pick(r, storages);
    s.data = r() < 0.5 ? s.data.slice(0, Math.max(0, s.data.length - 1 - int(r, 8))) : Buffer.concat([s.data, new Uint8Array(1 + int(r, 8))]);
    return ["storage resized", rebuild(r, entries)];
  }
  if (r() < 0.5) return ["entries deflated", zipArchive(entries.map((e) => ({ name: e.name, data: e.data, method: 8 as const })))];
  const e = pick(r, entries);
  return ["entry removed", zipArchive(entries.filter((x) => x !== e).map((x) => ({ name: x.name, data: x.data })))];
}

function rebuild(r: Rand, entries: readonly RawEntry[]): Uint8Array {
  const method: 0 | 8 = r() < 0.2 ? 8 : 0;
  return zipArchive(entries.map((e): ZipInput => ({ name: e.name, data: e.data, method })));
}

/** Edit one field of the central directory, an EOCD field, or duplicate an entry. */
function zipDirectoryEdit(r: Rand, src: Uint8Array): [string, Uint8Array] {
  const m = src.slice();
  const dv = new DataView(m.buffer);
  let eocd = m.length - 22;
  while (eocd >= 0 && dv.getUint32(eocd, true) !== 0x06054b50) eocd--;
  if (eocd < 0) return ["byte flips (no EOCD)", flipBytes(r, src)];
  const count = dv.getUint16(eocd + 10, true);
  const cdOffset = dv.getUint32(eocd + 16, true);
  const values = [0, 1, 2, 0xffff, 0xffffffff, 0x7fffffff, m.length, cdOffset];
  if (r() < 0.3) {
    const field = pick(r, [8, 10, 12, 16, 20]);
    const wide = field >= 12 && field < 20;
    const v = r() < 0.5 ? pick(r, values) : (wide ? dv.getUint32(eocd + field, true) : dv.getUint16(eocd + field, true)) + int(r, 5) - 2;
    if (wide) dv.setUint32(eocd + field, v >>> 0, true);
    else dv.setUint16(eocd + field, v & 0xffff, true);
    return [`EOCD field +${field}`, m];
  }
  // Walk to a random central entry.
  let p = cdOffset;
  const target = int(r, Math.max(1, count));
  for (let i = 0; i < target && p + 46 <= m.length; i++) p += 46 + dv.getUint16(p + 28, true) + dv.getUint16(p + 30, true) + dv.getUint16(p + 32, true);
  if (p + 46 > eocd) return ["byte flips (bad directory)", flipBytes(r, src)];
  const fields: Array<[number, 2 | 4, string]> = [[8, 2, "flags"], [10, 2, "method"], [16, 4, "crc"], [20, 4, "compressed size"], [24, 4, "size"], [28, 2, "name length"], [30, 2, "extra length"], [42, 4, "local offset"]];
  if (r() < 0.15) {
    // Duplicate this directory entry (same data under the same or a new name).
    const len = 46 + dv.getUint16(p + 28, true) + dv.getUint16(p + 30, true) + dv.getUint16(p + 32, true);
    const copy = m.slice(p, p + len);
    const lastNameByte = copy.length - 1 - dv.getUint16(p + 30, true) - dv.getUint16(p + 32, true);
    if (r() < 0.5 && lastNameByte >= 46) copy[lastNameByte] = copy[lastNameByte]! ^ 1;
    const out = Buffer.concat([m.subarray(0, eocd), copy, m.subarray(eocd)]);
    const odv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    const e2 = eocd + copy.length;
    odv.setUint16(e2 + 8, count + 1, true);
    odv.setUint16(e2 + 10, count + 1, true);
    odv.setUint32(e2 + 12, odv.getUint32(e2 + 12, true) + copy.length, true);
    return ["directory entry duplicated", out];
  }
  const [off, width, what] = pick(r, fields);
  const cur = width === 2 ? dv.getUint16(p + off, true) : dv.getUint32(p + off, true);
  const v = r() < 0.5 ? pick(r, values) : cur + int(r, 9) - 4;
  if (width === 2) dv.setUint16(p + off, v & 0xffff, true);
  else dv.setUint32(p + off, v >>> 0, true);
  return [`directory ${what}`, m];
}

/** Opcode-level pickle edits: replace, insert, delete, duplicate a span, or change an argument byte. */
function pickleEdit(r: Rand, pkl: Uint8Array): [string, Uint8Array] {
  const at = int(r, pkl.length);
  const c = int(r, 6);
  const splice = (cut: number, insert: Uint8Array) => Buffer.concat([pkl.subarray(0, at), insert, pkl.subarray(Math.min(pkl.length, at + cut))]);
  switch (c) {
    case 0: {
      const m = pkl.slice();
      m[at] = pick(r, ALL_OPS);
      return ["opcode replaced", m];
    }
    case 1: {
      const op = pick(r, ALL_OPS);
      const args = Array.from({ length: int(r, 9) }, () => (r() < 0.5 ? 0xff : int(r, 256)));
      return [`opcode 0x${op.toString(16)} inserted`, splice(0, Uint8Array.from([op, ...args]))];
    }
    case 2: return ["bytes deleted", splice(1 + int(r, 16), new Uint8Array(0))];
    case 3: {
      const len = 1 + int(r, 64);
      const span = pkl.subarray(at, Math.min(pkl.length, at + len));
      const times = pick(r, [2, 10, 1000, 20_000]);
      const w = new PickleWriter().repeat([...span], times).bytes();
      return [`span of ${span.length} repeated ${times}×`, splice(0, w)];
    }
    case 4: {
      const m = pkl.slice();
      m[at] = pick(r, [0, 1, 0x7f, 0x80, 0xff]);
      return ["argument byte set", m];
    }
    default: {
      // A structural opcode that builds containers, inserted before STOP's operand.
      const op = pick(r, [OP.MARK, OP.DUP, OP.APPENDS, OP.SETITEMS, OP.TUPLE, OP.LIST, OP.DICT, OP.POP_MARK, OP.MEMOIZE, OP.BUILD, OP.REDUCE]);
      return [`structural opcode 0x${op.toString(16)} inserted`, splice(0, Uint8Array.of(op))];
    }
  }
}

// ---- hostile generators ------------------------------------------------------------------------

/** A data.pkl of `{"w": <tensor over storage 0>, "x": <value>}`. */
function stateDictPickle(value: (w: PickleWriter) => void, tensor = (w: PickleWriter) => void w.tensor("0", 4, 0, [4], [1])): PickleWriter {
  const w = new PickleWriter().proto(2).op(OP.EMPTY_DICT).put(0).op(OP.MARK);
  w.str("w");
  tensor(w);
  w.str("x");
  value(w);
  return w.op(OP.SETITEMS);
}

const STORAGE0 = { "0": new Uint8Array(16) };

/** Deflated zero storages, built once per size (the CRC of a GiB of zeros takes a while). */
const zeros = new Map<number, ReturnType<typeof deflatedZeros>>();
function zerosOf(size: number): ReturnType<typeof deflatedZeros> {
  let z = zeros.get(size);
  if (!z) zeros.set(size, (z = deflatedZeros(size)));
  return z;
}

/** One of the class-1/2 hostile patterns, at a random scale. */
export function hostile(r: Rand): [string, Uint8Array] {
  const scale = pick(r, [1_000, 100_000, 1_000_000]);
  switch (int(r, 9)) {
    case 0: {
      // APPENDS of many Nones, in one mark or many.
      const w = stateDictPickle((w) => {
        w.op(OP.EMPTY_LIST).op(OP.MARK).repeat([OP.NONE], scale * 20).op(OP.APPENDS);
      });
      return [`APPENDS of ${scale * 20}`, torchZip(w.op(OP.STOP).bytes(), STORAGE0, { compressPickle: true })];
    }
    case 1: {
      const n = pick(r, [1000, 2 ** 20, 2 ** 28, 2 ** 31]);
      const w = stateDictPickle((w) => void w.op(OP.NONE), (w) => void w.tensor("0", 4, 0, [n], [0]));
      return [`expand view of ${n}`, torchZip(w.op(OP.STOP).bytes(), STORAGE0)];
    }
    case 2: {
      // Many transposed (copied) views of one storage.
      const views = Math.min(scale, 50_000);
      const w = stateDictPickle((w) => {
        w.op(OP.EMPTY_LIST).op(OP.MARK);
        for (let i = 0; i < views; i++) w.tensor("1", 65536, 0, [256, 256], [1, 256]);
        w.op(OP.APPENDS);
      });
      return [`${views} strided views`, torchZip(w.op(OP.STOP).bytes(), { ...STORAGE0, "1": new Uint8Array(4 * 65536) })];
    }
    case 3: {
      const size = pick(r, [1 << 20, 1 << 20, 64 << 20, 256 << 20]);
      const used = r() < 0.5;
      const w = stateDictPickle((w) => {
        if (used) w.tensor("1", size / 4, 0, [size / 4], [1]);
        else w.op(OP.MARK).str("storage").global("torch", "FloatStorage").str("1").str("cpu").int(size / 4).op(OP.TUPLE).op(OP.BINPERSID);
      });
      return [`deflated storage of ${size} bytes (${used ? "used" : "unused"})`, torchZip(w.op(OP.STOP).bytes(), { ...STORAGE0, "1": zerosOf(size) })];
    }
    case 4: {
      const w = stateDictPickle((w) => {
        w.repeat([OP.NONE, OP.POP], scale * 20).op(OP.NONE);
      });
      return [`compressed pickle of ${40 * scale} cheap opcodes`, torchZip(w.op(OP.STOP).bytes(), STORAGE0, { compressPickle: true })];
    }
    case 5: {
      const depth = pick(r, [1000, 99_999, 100_001]);
      const w = stateDictPickle((w) => {
        w.repeat([OP.MARK], depth).repeat([OP.TUPLE], depth);
      });
      return [`${depth} nested MARKs`, torchZip(w.op(OP.STOP).bytes(), STORAGE0, { compressPickle: true })];
    }
    case 6: {
      const w = stateDictPickle((w) => {
        w.op(OP.NONE);
        for (let i = 1; i < scale; i++) w.raw(OP.LONG_BINPUT, i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, 0);
      });
      return [`memo flood of ${scale}`, torchZip(w.op(OP.STOP).bytes(), STORAGE0, { compressPickle: true })];
    }
    case 7: {
      const depth = pick(r, [1001, 200_000]);
      const inDevice = r() < 0.5;
      const w = stateDictPickle((w) => {
        if (inDevice) w.global("torch", "device");
        w.op(OP.EMPTY_TUPLE).repeat([OP.TUPLE1], depth);
        if (inDevice) w.op(OP.TUPLE1).op(OP.REDUCE);
      });
      return [`${depth}-deep tuple${inDevice ? " in torch.device" : ""}`, torchZip(w.op(OP.STOP).bytes(), STORAGE0, { compressPickle: true })];
    }
    default: {
      // A dict shared twice per level: 2^levels names when flattened.
      const levels = pick(r, [10, 40]);
      const w = new PickleWriter().proto(2);
      w.tensor("0", 4, 0, [4], [1]).put(0);
      for (let i = 1; i <= levels; i++) w.op(OP.EMPTY_DICT).op(OP.MARK).str("a").get(i - 1).str("b").get(i - 1).op(OP.SETITEMS).put(i);
      return [`shared dict ${levels} levels`, torchZip(w.op(OP.STOP).bytes(), STORAGE0)];
    }
  }
}
