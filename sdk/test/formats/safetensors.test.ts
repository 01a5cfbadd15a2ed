import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileMissingError, FormatError } from "../../src/errors.js";
import { openSafetensors, openSafetensorsModel, readSafetensors, writeSafetensors } from "../../src/formats/safetensors/index.js";
import { REPO_ROOT, runPythonJson, tempDir } from "../helpers/python.js";
import { mixedStateDict, randomTensor, sha256 } from "./fixtures.js";

const tmp = tempDir("loraport-st-");
afterAll(() => tmp.cleanup());

// Python loads what we wrote and saves it again with save_file: same bytes means our writer is save_file's twin.
const RESAVE = `
import sys, json, hashlib, torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
out = {}
for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):
    sd = load_file(src)
    with safe_open(src, "pt") as f:
        meta = f.metadata()
    save_file(sd, dst, metadata=meta)
    out[src] = {k: hashlib.sha256(bytes(v.contiguous().untyped_storage())[: v.numel() * v.element_size()]).hexdigest() for k, v in sd.items()}
print(json.dumps(out))
`;

describe("writeSafetensors", () => {
  it("writes the same bytes as Python save_file (every dtype, empty, scalars, metadata, many tensors)", async () => {
    const cases: Array<[string, Map<string, ReturnType<typeof randomTensor>>, Record<string, string> | undefined]> = [
      ["mixed", mixedStateDict(), { format: "pt" }],
      ["nometa", mixedStateDict(), undefined],
      ["many", new Map(Array.from({ length: 300 }, (_, i) => [`model.layers.${i}.weight`, randomTensor(i % 3 ? "F32" : "BF16", [i % 7, 3], i)])), { format: "pt" }],
      ["empty", new Map(), { format: "pt" }],
    ];
    const args: string[] = [];
    for (const [name, sd, meta] of cases) {
      await writeSafetensors(join(tmp.dir, `${name}.ts.safetensors`), sd, meta);
      args.push(join(tmp.dir, `${name}.ts.safetensors`), join(tmp.dir, `${name}.py.safetensors`));
    }
    const hashes = runPythonJson<Record<string, Record<string, string>>>(RESAVE, args);
    for (const [name, sd] of cases) {
      const ours = readFileSync(join(tmp.dir, `${name}.ts.safetensors`));
      const theirs = readFileSync(join(tmp.dir, `${name}.py.safetensors`));
      expect(ours.equals(theirs), `${name}: bytes differ from save_file`).toBe(true);
      const seen = hashes[join(tmp.dir, `${name}.ts.safetensors`)]!;
      expect(Object.keys(seen).sort()).toEqual([...sd.keys()].sort());
      for (const [k, t] of sd) expect(seen[k], k).toBe(sha256(t));
    }
  });

  it("keeps several metadata keys (Python orders them by hash, so compared as values)", async () => {
    const path = join(tmp.dir, "meta.safetensors");
    await writeSafetensors(path, [["a", randomTensor("F32", [2], 1)]], { format: "pt", "ünï": 'q"\n\\', b: "" });
    const meta = runPythonJson<Record<string, string>>(
      `import sys, json\nfrom safetensors import safe_open\nwith safe_open(sys.argv[1], "pt") as f: print(json.dumps(f.metadata()))`, [path]);
    expect(meta).toEqual({ format: "pt", "ünï": 'q"\n\\', b: "" });
  });

  it("refuses bad input and never leaves a file behind", async () => {
    const path = join(tmp.dir, "bad.safetensors");
    const t = randomTensor("F32", [2], 1);
    await expect(writeSafetensors(path, [["a", t], ["a", t]])).rejects.toThrow(/'a' given twice/);
    await expect(writeSafetensors(path, [["a", { dtype: "F32", shape: [3], data: t.data }]])).rejects.toThrow(/needs 12 bytes/);
    await expect(writeSafetensors(path, [["a", { dtype: "F16", shape: [2], data: t.data }]])).rejects.toThrow(/Uint16Array/);
    expect(() => readFileSync(path)).toThrow();
  });
});

describe("openSafetensors / readSafetensors", () => {
  it("reads what Python save_file wrote, value for value, and writing it back gives the same bytes", async () => {
    const made = runPythonJson<Record<string, { dtype: string; shape: number[]; sha: string }>>(`
import sys, json, hashlib, torch
from safetensors.torch import save_file
g = torch.Generator().manual_seed(0)
dts = dict(F64=torch.float64, F32=torch.float32, F16=torch.float16, BF16=torch.bfloat16, I64=torch.int64, I32=torch.int32,
           I16=torch.int16, I8=torch.int8, U64=torch.uint64, U32=torch.uint32, U16=torch.uint16, U8=torch.uint8, BOOL=torch.bool,
           F8_E4M3=torch.float8_e4m3fn, F8_E5M2=torch.float8_e5m2)
sd = {}
for i, (k, dt) in enumerate(dts.items()):
    x = torch.randn(4, 3, generator=g) * 50
    sd["w." + k] = (x > 0) if dt == torch.bool else x.to(dt)
sd["empty"] = torch.zeros(0, 5)
sd["scalar"] = torch.tensor(3.5, dtype=torch.float16)
for i in range(50): sd[f"layer.{i}.b"] = torch.randn(i, generator=g)
save_file(sd, sys.argv[1], metadata={"format": "pt"})
def raw(v): return bytes(v.contiguous().untyped_storage())[: v.numel() * v.element_size()]
print(json.dumps({k: dict(dtype=str(v.dtype), shape=list(v.shape), sha=hashlib.sha256(raw(v)).hexdigest()) for k, v in sd.items()}))
`, [join(tmp.dir, "py.safetensors")]);
    const { tensors, metadata } = await readSafetensors(join(tmp.dir, "py.safetensors"));
    expect(metadata).toEqual({ format: "pt" });
    expect([...tensors.keys()].sort()).toEqual(Object.keys(made).sort());
    for (const [k, t] of tensors) {
      expect(t.shape, k).toEqual(made[k]!.shape);
      expect(sha256(t), k).toBe(made[k]!.sha);
    }
    await writeSafetensors(join(tmp.dir, "py.again.safetensors"), tensors, metadata);
    expect(readFileSync(join(tmp.dir, "py.again.safetensors")).equals(readFileSync(join(tmp.dir, "py.safetensors")))).toBe(true);
  });

  it("lists entries without reading data and reads one tensor by offset", async () => {
    const path = join(tmp.dir, "lazy.safetensors");
    const sd = mixedStateDict();
    await writeSafetensors(path, sd);
    const src = await openSafetensors(path);
    try {
      expect([...src.names].sort()).toEqual([...sd.keys()].sort());
      const e = src.entry("t.bf16")!;
      expect(e).toMatchObject({ name: "t.bf16", dtype: "BF16", shape: [3, 5], byteLength: 30, file: path });
      expect(readFileSync(path).subarray(e.byteOffset, e.byteOffset + e.byteLength)).toEqual(Buffer.from(sd.get("t.bf16")!.data.buffer));
      expect(sha256(await src.read("t.u64"))).toBe(sha256(sd.get("t.u64")!));
      await expect(src.read("nope")).rejects.toThrow(FormatError);
    } finally {
      await src.close();
    }
  });
});

/** A file with this header JSON (given as text) and `data` bytes after it. */
function craft(name: string, header: string, dataBytes = 0, lengthOverride?: bigint): string {
  const json = Buffer.from(header, "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const path = join(tmp.dir, name);
  writeFileSync(path, Buffer.concat([prefix, json, Buffer.alloc(dataBytes)]));
  return path;
}

describe("validation: each bad file is a FormatError naming the file and the problem", () => {
  const f32 = (b: number, e: number, shape = "[2]") => `{"dtype":"F32","shape":${shape},"data_offsets":[${b},${e}]}`;
  const cases: Array<[string, () => string, RegExp]> = [
    ["shorter than 8 bytes", () => { const p = join(tmp.dir, "short"); writeFileSync(p, Buffer.from([1, 2])); return p; }, /shorter than the 8-byte/],
    ["header length beyond the file", () => craft("beyond", `{}`, 0, 1000n), /runs past the end of the file/],
    ["header length above the cap", () => craft("cap", `{}`, 0, 200_000_000n), /above the 100000000-byte cap/],
    ["header not JSON", () => craft("notjson", `{"a":`), /not JSON/],
    ["header not an object", () => craft("array", `[1,2]`), /not a JSON object/],
    ["header not UTF-8", () => { const p = craft("utf8", `{"\xff":1}`); const b = readFileSync(p); b[10] = 0xff; writeFileSync(p, b); return p; }, /not valid UTF-8|not JSON/],
    ["unknown dtype", () => craft("dtype", `{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}`, 8), /tensor 'a': unknown dtype "F33"/],
    ["size mismatch", () => craft("size", `{"a":${f32(0, 12)}}`, 12), /tensor 'a': data_offsets \[0, 12\] hold 12 bytes, but F32 \[2\] needs 8/],
    ["end before begin", () => craft("order", `{"a":${f32(8, 0)}}`, 8), /out of order/],
    ["overlap", () => craft("overlap", `{"a":${f32(0, 8)},"b":${f32(4, 12)}}`, 12), /overlaps/],
    ["gap", () => craft("gap", `{"a":${f32(0, 8)},"b":${f32(12, 20)}}`, 20), /gap in the data section/],
    ["trailing bytes", () => craft("trailing", `{"a":${f32(0, 8)}}`, 16), /8 trailing bytes/],
    ["data past the end", () => craft("past", `{"a":${f32(0, 8)}}`, 4), /past the end of the file/],
    ["non-string metadata", () => craft("meta", `{"__metadata__":{"format":"pt","n":3},"a":${f32(0, 8)}}`, 8), /__metadata__ value for 'n' is a number, expected a string/],
    ["duplicate names", () => craft("dup", `{"a":${f32(0, 8)},"a":${f32(8, 16)}}`, 16), /names tensor 'a' more than once/],
    ["bad shape", () => craft("shape", `{"a":${f32(0, 8, "[-2]")}}`, 8), /shape \[-2\] is not a list of non-negative integers/],
  ];
  for (const [what, make, message] of cases) {
    it(what, async () => {
      const path = make();
      const err = await openSafetensors(path).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(FormatError);
      expect((err as FormatError).file).toBe(path);
      expect((err as Error).message).toContain(path);
      expect((err as Error).message).toMatch(message);
    });
  }

  it("missing file is a FileMissingError", async () => {
    await expect(openSafetensors(join(tmp.dir, "does-not-exist.safetensors"))).rejects.toBeInstanceOf(FileMissingError);
  });
});

describe("openSafetensorsModel", () => {
  it("reads a sharded checkpoint through its index, and a folder with model.safetensors", async () => {
    const dir = join(tmp.dir, "sharded");
    mkdirSync(dir);
    const a = randomTensor("F32", [3, 4], 1), b = randomTensor("BF16", [5], 2), c = randomTensor("I64", [2], 3);
    await writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), [["a", a], ["b", b]], { format: "pt" });
    await writeSafetensors(join(dir, "model-00002-of-00002.safetensors"), [["c", c]], { format: "pt" });
    const index = { metadata: { total_size: 70 }, weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00001-of-00002.safetensors", c: "model-00002-of-00002.safetensors" } };
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
    for (const target of [dir, join(dir, "model.safetensors.index.json")]) {
      const src = await openSafetensorsModel(target);
      try {
        expect([...src.names]).toEqual(["a", "b", "c"]);
        expect(src.shards).toHaveLength(2);
        expect(src.index).toEqual(index);
        expect(sha256(await src.read("c"))).toBe(sha256(c));
        expect(sha256(await src.read("b"))).toBe(sha256(b));
      } finally {
        await src.close();
      }
    }
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "../outside.safetensors" } }));
    await expect(openSafetensorsModel(dir)).rejects.toThrow(/expected a shard file name in the same folder/);
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { zz: "model-00002-of-00002.safetensors" } }));
    await expect(openSafetensorsModel(dir)).rejects.toThrow(/that shard has no such tensor/);

    const single = join(tmp.dir, "single");
    mkdirSync(single);
    await writeSafetensors(join(single, "model.safetensors"), [["x", a]]);
    const src = await openSafetensorsModel(single);
    expect(src.names).toEqual(["x"]);
    await src.close();
  });
});

describe("large files", () => {
  it("lists a 5 GB file and reads one tensor of it without reading the rest", async () => {
    // A sparse file: the 5 GB tensor is a hole on disk, so this costs no disk space or time.
    const big = 5_000_000_000;
    const header = Buffer.from(JSON.stringify({
      big: { dtype: "U8", shape: [big], data_offsets: [0, big] },
      small: { dtype: "F32", shape: [4], data_offsets: [big, big + 16] },
    }));
    const path = join(tmp.dir, "sparse.safetensors");
    const fd = openSync(path, "w");
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length));
    writeSync(fd, Buffer.concat([prefix, header]), 0, 8 + header.length, 0);
    ftruncateSync(fd, 8 + header.length + big + 16);
    writeSync(fd, Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), 0, 16, 8 + header.length + big);
    closeSync(fd);
    const before = process.memoryUsage().rss;
    const src = await openSafetensors(path);
    try {
      expect(src.entry("big")!.byteLength).toBe(big);
      expect(Array.from((await src.read("small")).data as Float32Array)).toEqual([1, 2, 3, 4]);
      expect(process.memoryUsage().rss - before).toBeLessThan(200 * 2 ** 20);
    } finally {
      await src.close();
    }
  });

  it("reads a sharded checkpoint saved by huggingface_hub (as transformers save_pretrained shards) through its index", async () => {
    const dir = join(tmp.dir, "hf-sharded");
    const want = runPythonJson<Record<string, string>>(`
import sys, json, hashlib, os, torch
from huggingface_hub import save_torch_state_dict
from safetensors.torch import load_file
g = torch.Generator().manual_seed(3)
sd = {f"model.layers.{i}.{p}": torch.randn(32, 64, generator=g).to(dt) for i in range(4) for p, dt in (("q.weight", torch.float32), ("k.weight", torch.bfloat16))}
os.makedirs(sys.argv[1], exist_ok=True)
save_torch_state_dict(sd, sys.argv[1], max_shard_size="20KB")
idx = json.load(open(os.path.join(sys.argv[1], "model.safetensors.index.json")))
out = {}
for name, shard in idx["weight_map"].items():
    t = load_file(os.path.join(sys.argv[1], shard))[name]
    out[name] = hashlib.sha256(bytes(t.contiguous().untyped_storage())[: t.numel() * t.element_size()]).hexdigest()
print(json.dumps(out))
`, [dir]);
    const src = await openSafetensorsModel(dir);
    try {
      expect(src.shards.length).toBeGreaterThan(1);
      expect([...src.names].sort()).toEqual(Object.keys(want).sort());
      for (const name of src.names) expect(sha256(await src.read(name)), name).toBe(want[name]);
    } finally {
      await src.close();
    }
  });
});
