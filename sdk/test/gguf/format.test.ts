/**
 * The GGUF reader and writer: every value type and plain tensor type round-trips, node-llama-cpp's own GGUF parser
 * reads loraport's files the same, and damaged files (hand-built bad headers, every truncation, seeded byte changes)
 * give a FormatError naming what is wrong — never another exception or a hang.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readGgufFileInfo } from "node-llama-cpp";
import { FormatError } from "../../src/errors.js";
import { ByteBuilder } from "../../src/formats/gguf/encode.js";
import { GgufType, gguf, openGguf, parseGgufHeader, readGguf, writeGguf, type GgufValue } from "../../src/formats/gguf/index.js";
import { tensor } from "../../src/tensor/index.js";
import { tempDir } from "../helpers/python.js";

const tmp = tempDir("loraport-gguf-format-");
afterAll(() => tmp.cleanup());

const METADATA: Array<readonly [string, GgufValue]> = [
  ["general.architecture", gguf.str("llama")],
  ["general.alignment", gguf.u32(64)],
  ["t.u8", { type: GgufType.UINT8, value: 255 }],
  ["t.i8", { type: GgufType.INT8, value: -128 }],
  ["t.u16", { type: GgufType.UINT16, value: 65535 }],
  ["t.i16", { type: GgufType.INT16, value: -32768 }],
  ["t.u32", gguf.u32(4294967295)],
  ["t.i32", gguf.i32(-2147483648)],
  ["t.f32", gguf.f32(0.5)],
  ["t.f64", { type: GgufType.FLOAT64, value: Math.PI }],
  ["t.u64", { type: GgufType.UINT64, value: 2n ** 64n - 1n }],
  ["t.i64", { type: GgufType.INT64, value: -(2n ** 63n) }],
  ["t.bool", gguf.bool(true)],
  ["t.string", gguf.str("héllo ☃")],
  ["t.strings", gguf.strings(["a", "", "ünï"])],
  ["t.f32s", gguf.f32s([1, -2.5, 3])],
];
const TENSORS = [
  ["w.f32", tensor("F32", [3, 5], Float32Array.from({ length: 15 }, (_, i) => i * 0.25 - 1))],
  ["w.f16", tensor("F16", [7], Uint16Array.from({ length: 7 }, (_, i) => 0x3c00 + i))],
  ["w.bf16", tensor("BF16", [2, 2, 3], Uint16Array.from({ length: 12 }, (_, i) => 0x3f80 + i))],
  ["w.i32", tensor("I32", [1, 1, 1, 2], Int32Array.from([-7, 9]))],
] as const;

async function sample(name = "sample.gguf"): Promise<string> {
  const file = join(tmp.dir, name);
  await writeGguf(file, { metadata: METADATA, tensors: TENSORS });
  return file;
}

describe("GGUF round trip", () => {
  it("every metadata type and F32/F16/BF16/I32 tensors read back equal; data aligned to general.alignment", async () => {
    const { header, tensors } = await readGguf(await sample());
    expect(header.version).toBe(3);
    expect(header.alignment).toBe(64);
    expect([...header.metadata]).toEqual(METADATA.map(([k, v]) => (v.type === GgufType.FLOAT32 ? [k, { ...v, value: Math.fround(v.value as number) }] : [k, v])));
    for (const [name, t] of TENSORS) {
      const got = tensors.get(name)!;
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      expect([...got.data]).toEqual([...t.data]);
    }
    for (const t of header.tensors) expect(t.byteOffset % 64).toBe(0);
  });

  it("node-llama-cpp's GGUF parser reads the same keys, tensor names, shapes and offsets", async () => {
    const file = await sample("peer.gguf");
    const info = await readGgufFileInfo(file, { readTensorInfo: true });
    const ours = await openGguf(file);
    const t = info.metadata as unknown as { t: Record<string, unknown>; general: Record<string, unknown> };
    expect(t.general.alignment).toBe(64);
    expect(t.t.string).toBe("héllo ☃");
    expect(t.t.strings).toEqual(["a", "", "ünï"]);
    expect(t.t.i32).toBe(-2147483648);
    expect(BigInt(t.t.u64 as bigint)).toBe(2n ** 64n - 1n);
    expect(info.fullTensorInfo!.map((x) => [x.name, x.dimensions.map(Number), Number(x.offset)]))
      .toEqual(ours.tensors.map((x) => [x.name, [...x.ne], x.byteOffset - ours.dataStart]));
  });

  it("the writer refuses what llama.cpp cannot load, naming the tensor", async () => {
    const bad = async (tensors: Parameters<typeof writeGguf>[1]["tensors"]) => writeGguf(join(tmp.dir, "bad.gguf"), { metadata: [], tensors });
    await expect(bad([["x".repeat(64), tensor("F32", [1])]])).rejects.toThrow(/name is 64 bytes, llama.cpp allows at most 63/);
    await expect(bad([["u8", tensor("U8", [4])]])).rejects.toThrow(/tensor 'u8': dtype U8 has no GGUF type/);
    await expect(bad([["five", tensor("F32", [1, 1, 1, 1, 2])]])).rejects.toThrow(/tensor 'five': 5-D shape/);
    await expect(writeGguf(join(tmp.dir, "bad.gguf"), { metadata: [["k", gguf.u32(-1)]], tensors: [] })).rejects.toThrow(/metadata key 'k': UINT32 value -1/);
  });
});

/** A header built by hand: `kvs` and `tensors` written as given, no validation. */
function header(opts: { version?: number; kvs?: Array<(b: ByteBuilder) => void>; tensors?: Array<{ name: string; ne: number[]; type: number; offset: number }>; tensorCount?: bigint; data?: number }): Uint8Array {
  const b = new ByteBuilder();
  b.u32(0x46554747);
  b.u32(opts.version ?? 3);
  b.u64(opts.tensorCount ?? BigInt(opts.tensors?.length ?? 0));
  b.u64(opts.kvs?.length ?? 0);
  for (const kv of opts.kvs ?? []) kv(b);
  for (const t of opts.tensors ?? []) {
    b.string(t.name);
    b.u32(t.ne.length);
    for (const d of t.ne) b.u64(d);
    b.u32(t.type);
    b.u64(t.offset);
  }
  b.zeros((32 - (b.length % 32)) % 32 + (opts.data ?? 0));
  return b.bytes().slice();
}
const parse = (bytes: Uint8Array) => parseGgufHeader("bad.gguf", bytes, bytes.byteLength);
const kv = (key: string, type: number, write: (b: ByteBuilder) => void) => (b: ByteBuilder) => { b.string(key); b.u32(type); write(b); };
const f32 = (name: string, n: number, offset: number) => ({ name, ne: [n], type: 0, offset });

describe("damaged GGUF headers give a FormatError naming the problem", () => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ["too short", new Uint8Array(10), /shorter than the 24-byte GGUF header/],
    ["bad magic", (() => { const h = header({}); h[0] = 0x47; h[3] = 0x00; return h; })(), /not a GGUF file: magic/],
    ["version 1", header({ version: 1 }), /GGUF version 1 is not supported/],
    ["big-endian", header({ version: 0x03000000 }), /big-endian GGUF is not supported/],
    ["tensor count past the file", header({ tensorCount: 2n ** 40n }), /tensor count is 1099511627776, more than/],
    ["string length past the end", header({ kvs: [(b) => b.u64(2n ** 50n)] }), /metadata key #0 \(string length\) is/],
    ["invalid UTF-8 key", header({ kvs: [(b) => { b.u64(2); b.u8(0xff); b.u8(0xfe); b.u32(4); b.u32(1); }] }), /metadata key #0 is not valid UTF-8/],
    ["unknown value type", header({ kvs: [kv("k", 13, () => {})] }), /metadata key 'k': unknown value type 13/],
    ["duplicate key", header({ kvs: [kv("k", 4, (b) => b.u32(1)), kv("k", 4, (b) => b.u32(2))] }), /metadata key 'k' occurs more than once/],
    ["BOOL byte 2", header({ kvs: [kv("k", 7, (b) => b.u8(2))] }), /metadata key 'k': BOOL byte is 2/],
    ["array longer than the file", header({ kvs: [kv("k", 9, (b) => { b.u32(4); b.u64(2n ** 40n); })] }), /metadata key 'k' array length is/],
    ["alignment not a power of two", header({ kvs: [kv("general.alignment", 4, (b) => b.u32(48))] }), /general.alignment 48 is not a power of two/],
    ["alignment of the wrong type", header({ kvs: [kv("general.alignment", 5, (b) => b.i32(32))] }), /general.alignment is INT32, expected UINT32/],
    ["5 dimensions", header({ tensors: [{ name: "x", ne: [1, 1, 1, 1, 1], type: 0, offset: 0 }], data: 32 }), /tensor 'x': 5 dimensions, expected 1 to 4/],
    ["unknown ggml type", header({ tensors: [{ name: "x", ne: [4], type: 99, offset: 0 }], data: 32 }), /tensor 'x': unknown ggml type 99/],
    ["row not a whole block", header({ tensors: [{ name: "x", ne: [10], type: 8, offset: 0 }], data: 64 }), /row size 10 is not a multiple of the Q8_0 block size 32/],
    ["misaligned offset", header({ tensors: [f32("x", 4, 8)], data: 64 }), /tensor 'x': data offset 8 is not a multiple of the alignment 32/],
    ["tensor past the end", header({ tensors: [f32("x", 64, 0)], data: 32 }), /tensor 'x': F32 \[64\] needs bytes 0..256 of the data section, which has 32/],
    ["overlapping tensors", header({ tensors: [f32("a", 16, 0), f32("b", 8, 32)], data: 96 }), /tensor 'b' \(at byte \d+\) overlaps tensor 'a'/],
    ["duplicate tensor", header({ tensors: [f32("a", 8, 0), f32("a", 8, 32)], data: 64 }), /tensor 'a' occurs more than once/],
    ["huge dimension product", header({ tensors: [{ name: "x", ne: [2 ** 30, 2 ** 30, 2 ** 30], type: 0, offset: 0 }], data: 32 }), /tensor 'x': dimensions .* have too many elements/],
  ];
  it.each(cases)("%s", (_label, bytes, message) => {
    let err: unknown;
    try {
      parse(bytes);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message.startsWith("bad.gguf: ")).toBe(true);
  });

  it("a file read from disk: FileMissingError when absent, FormatError when cut short in the tensor data", async () => {
    await expect(openGguf(join(tmp.dir, "absent.gguf"))).rejects.toThrow(/no such file/);
    const { readFileSync } = await import("node:fs");
    const full = readFileSync(await sample("cut.gguf"));
    const cut = join(tmp.dir, "cut-short.gguf");
    writeFileSync(cut, full.subarray(0, full.length - 60)); // into the last tensor (the trailing padding alone may go, as llama.cpp's loader allows)
    await expect(openGguf(cut)).rejects.toThrow(/tensor .w.i32.: I32 \[1, 1, 1, 2\] needs bytes/);
  });

  it("every truncation and 3000 seeded byte changes of a real file: a header or a FormatError, nothing else", async () => {
    const { readFileSync } = await import("node:fs");
    const src = new Uint8Array(readFileSync(await sample("fuzz.gguf")));
    let x = 12345;
    const r = () => ((x = (x * 1103515245 + 12345) >>> 0) / 4294967296);
    const inputs: Uint8Array[] = [];
    for (let n = 0; n < src.length; n++) inputs.push(src.subarray(0, n));
    for (let i = 0; i < 3000; i++) {
      const m = src.slice();
      for (let j = 0, k = 1 + Math.floor(r() * 4); j < k; j++) m[Math.floor(r() * m.length)] = Math.floor(r() * 256);
      inputs.push(m);
    }
    let errors = 0;
    for (const m of inputs) {
      try {
        parse(m);
      } catch (e) {
        if (!(e instanceof FormatError)) throw e;
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(src.length - 1); // every truncation at least
  });
});
