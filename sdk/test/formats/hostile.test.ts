/**
 * Regression tests for issue 12's classes 1 and 2: small files that describe huge memory or work, and deep
 * nesting. Each hostile file is read by every reader in a CHILD process under a memory cap (fuzz/worker.ts), so
 * an out-of-memory kill, a crash or a hang fails the test instead of the suite; the outcome must be a typed error
 * naming the budget (or a correct result), with the child's peak RSS under the cap. Files that torch writes
 * come from real torch.save in this run, and results that should load are compared with torch.load.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FormatError, ReadLimitError } from "../../src/errors.js";
import { readSafetensors } from "../../src/formats/safetensors/reader.js";
import { readTorchCheckpoint } from "../../src/formats/torch/checkpoint.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { OP, PickleWriter, deflatedZeros, torchZip } from "./fuzz/builders.js";
import { checkFilesInChildren } from "./fuzz/runner.js";
import type { WorkerMessage } from "./fuzz/worker.js";

const tmp = tempDir("loraport-hostile-");
afterAll(() => tmp.cleanup());
const file = (name: string) => join(tmp.dir, name);

/** Child peak RSS cap: Node + tsx take ~100 MiB; a small file's budget is 128 MiB plus 8× its size. */
const MEM_CAP = 700 * 2 ** 20;

/** `{"w": tensor over a 16-byte storage, "x": <value>}` as data.pkl. */
function withValue(value: (w: PickleWriter) => void): PickleWriter {
  const w = new PickleWriter().proto(2).op(OP.EMPTY_DICT).put(0).op(OP.MARK);
  w.str("w").tensor("0", 4, 0, [4], [1]).str("x");
  value(w);
  return w.op(OP.SETITEMS).op(OP.STOP);
}
/** Storage "0": four F32 values 1, 2, 3, 4 (checked below). */
const storage0 = () => ({ "0": new Uint8Array(Float32Array.of(1, 2, 3, 4).buffer) });

const HOSTILE: Record<string, { expect: "typed" | "ok"; error?: RegExp }> = {};
let results: Map<string, WorkerMessage>;
/** References from torch.load / safetensors.load_file in this run. */
let ref: {
  views: number[][];
  appends: { n: number; w: number[] };
  expand: { shape: number[]; sum: number };
  deep: string[];
};

beforeAll(async () => {
  const put = (name: string, bytes: Uint8Array, expectation: (typeof HOSTILE)[string]) => {
    writeFileSync(file(name), bytes);
    HOSTILE[name] = expectation;
  };
  // 150M-element APPENDS from a compressed data.pkl (was: V8 fatal error at ~3 GB).
  put("appends-150m.pt", torchZip(withValue((w) => w.op(OP.EMPTY_LIST).op(OP.MARK).repeat([OP.NONE], 150_000_000).op(OP.APPENDS)).bytes(), storage0(), { compressPickle: true }), { expect: "typed", error: /E_READ_LIMIT/ });
  // 200k items in one APPENDS (was: RangeError from push(...items)); must load.
  put("appends-200k.pt", torchZip(withValue((w) => w.op(OP.EMPTY_LIST).op(OP.MARK).repeat([OP.NONE], 200_000).op(OP.APPENDS)).bytes(), storage0()), { expect: "ok" });
  // Zip bombs: a 1 GiB storage that a tensor uses, and one that none does (never read).
  const bomb = (used: boolean) => withValue((w) => {
    if (used) w.tensor("1", 2 ** 28, 0, [2 ** 28], [1]);
    else w.op(OP.MARK).str("storage").global("torch", "FloatStorage").str("1").str("cpu").int(2 ** 28).op(OP.TUPLE).op(OP.BINPERSID);
  });
  const gib = deflatedZeros(2 ** 30);
  put("storage-bomb-used.pt", torchZip(bomb(true).bytes(), { ...storage0(), "1": gib }), { expect: "typed", error: /E_READ_LIMIT\[bytesPerFileByte\].*zip entry 'archive\/data\/1'/ });
  put("storage-bomb-unused.pt", torchZip(bomb(false).bytes(), { ...storage0(), "1": gib }), { expect: "ok" });
  // data.pkl bomb: 200 MB of cheap opcodes compressed to ~0.2 MB (was: 60 s of CPU).
  put("pickle-bomb.pt", torchZip(withValue((w) => w.repeat([OP.NONE, OP.POP], 100_000_000).op(OP.NONE)).bytes(), storage0(), { compressPickle: true }), { expect: "typed", error: /E_READ_LIMIT\[bytesPerFileByte\].*data\.pkl/ });
  // 60 MB of them: under the byte budget, over the operation budget.
  put("pickle-ops.pt", torchZip(withValue((w) => w.repeat([OP.NONE, OP.POP], 30_000_000).op(OP.NONE)).bytes(), storage0(), { compressPickle: true }), { expect: "typed", error: /E_READ_LIMIT\[opsPerFileByte\]/ });
  // Nested MARKs: under the MARK cap (then too deep), and over it.
  put("marks-99999.pt", torchZip(withValue((w) => w.repeat([OP.MARK], 99_999).repeat([OP.TUPLE], 99_999)).bytes(), storage0(), { compressPickle: true }), { expect: "typed", error: /E_READ_LIMIT\[maxDepth\]/ });
  put("marks-100001.pt", torchZip(withValue((w) => w.repeat([OP.MARK], 100_001).repeat([OP.TUPLE], 100_001)).bytes(), storage0(), { compressPickle: true }), { expect: "typed", error: /more than 100000 nested MARKs/ });
  // A memo flood of 5M distinct keys, under the 10M memo cap (was: cap reached after 51 s and 1.4 GB).
  const memo = withValue((w) => {
    w.op(OP.NONE);
    const keys = new Uint8Array(5 * 5_000_000);
    for (let i = 0; i < 5_000_000; i++) {
      keys[5 * i] = OP.LONG_BINPUT;
      keys[5 * i + 1] = i & 0xff;
      keys[5 * i + 2] = (i >> 8) & 0xff;
      keys[5 * i + 3] = (i >> 16) & 0xff;
    }
    w.bytesRaw(keys);
  });
  put("memo-flood.pt", torchZip(memo.bytes(), storage0(), { compressPickle: true }), { expect: "typed", error: /E_READ_LIMIT/ });
  // 200k-deep tuples, bare and inside torch.device (was: RangeError: Maximum call stack size exceeded).
  put("deep-tuple.pt", torchZip(withValue((w) => w.op(OP.EMPTY_TUPLE).repeat([OP.TUPLE1], 200_000)).bytes(), storage0(), { compressPickle: true }), { expect: "typed", error: /E_READ_LIMIT\[maxDepth\].*nested more than 1000 levels/ });
  put("deep-device.pt", torchZip(withValue((w) => w.global("torch", "device").op(OP.EMPTY_TUPLE).repeat([OP.TUPLE1], 200_000).op(OP.TUPLE1).op(OP.REDUCE)).bytes(), storage0(), { compressPickle: true }), { expect: "typed", error: /E_FORMAT: .*torch\.device is a tuple, expected a short string/ });
  // One dict shared twice per level, 40 levels: 2^40 names when flattened.
  const shared = new PickleWriter().proto(2).tensor("0", 4, 0, [4], [1]).put(0);
  for (let i = 1; i <= 40; i++) shared.op(OP.EMPTY_DICT).op(OP.MARK).str("a").get(i - 1).str("b").get(i - 1).op(OP.SETITEMS).put(i);
  put("shared-dict.pt", torchZip(shared.op(OP.STOP).bytes(), storage0()), { expect: "typed", error: /E_READ_LIMIT.*(flattening|a tensor name)/ });
  // safetensors: 20,000-deep JSON in a header (was: RangeError from JSON.stringify in the message).
  const deepHeader = (field: string) => {
    const d = "[".repeat(20_000) + "]".repeat(20_000);
    const text = `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],${JSON.stringify(field)}:${d}}}`;
    const out = new Uint8Array(8 + text.length + 4);
    new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
    out.set(Buffer.from(text), 8);
    return out;
  };
  for (const field of ["dtype", "shape", "extra"]) put(`deep-${field}.safetensors`, deepHeader(field), { expect: "typed", error: /nests 20002 levels deep; the safetensors library parses at most 127/ });

  // One Python process (importing torch costs seconds here): real torch.save files with expanded views and many
  // views of one storage (contiguous and transposed), then torch.load / load_file references for the checks below.
  ref = runPythonJson(`
import json, sys, torch
from safetensors.torch import load_file
d = sys.argv[1]
torch.save({"w": torch.zeros(4).expand(2**26, 4)}, d + "/expand-1gib.pt")
torch.save({"w": torch.full((1,), 3.0).expand(2**26)}, d + "/expand-256mib.pt")
s = torch.arange(65536, dtype=torch.float32)
torch.save({f"v{i}": s[i:i + 60000] for i in range(5000)}, d + "/contiguous-views.pt")
torch.save({f"t{i}": s.view(256, 256).t() for i in range(1000)}, d + "/transposed-views.pt")
sd = torch.load(d + "/contiguous-views.pt", weights_only=True)
views = [sd[k][:3].tolist() + [sd[k].numel()] for k in ("v0", "v7", "v4999")]
sd = torch.load(d + "/appends-200k.pt", weights_only=True)
appends = {"n": len(sd["x"]), "w": sd["w"].tolist()}
w = torch.load(d + "/expand-256mib.pt", weights_only=True)["w"]
expand = {"shape": list(w.shape), "sum": float(w.double().sum())}
deep = []
for f in ("dtype", "shape", "extra"):
    try:
        load_file(d + f"/deep-{f}.safetensors"); deep.append("ok")
    except Exception as e:
        deep.append(type(e).__name__)
print(json.dumps({"views": views, "appends": appends, "expand": expand, "deep": deep}))`, [tmp.dir]);
  HOSTILE["expand-1gib.pt"] = { expect: "typed", error: /E_READ_LIMIT\[bytesPerFileByte\].*strided view/ };
  HOSTILE["expand-256mib.pt"] = { expect: "typed", error: /E_READ_LIMIT\[bytesPerFileByte\]/ };
  HOSTILE["contiguous-views.pt"] = { expect: "ok" };
  HOSTILE["transposed-views.pt"] = { expect: "typed", error: /E_READ_LIMIT\[bytesPerFileByte\].*strided view/ };


  const names = Object.keys(HOSTILE);
  const byPath = await checkFilesInChildren(names.map(file), tmp.dir, MEM_CAP, limit(120_000));
  results = new Map(names.map((n) => [n, byPath.get(file(n))!]));
}, limit(600_000));

describe("hostile files: bounded memory and work, typed errors (in a child under a memory cap)", () => {
  const cases = [
    "expand-1gib.pt", "expand-256mib.pt", "contiguous-views.pt", "transposed-views.pt", "appends-150m.pt", "appends-200k.pt",
    "storage-bomb-used.pt", "storage-bomb-unused.pt", "pickle-bomb.pt", "pickle-ops.pt", "marks-99999.pt", "marks-100001.pt",
    "memo-flood.pt", "deep-tuple.pt", "deep-device.pt", "shared-dict.pt", "deep-dtype.safetensors", "deep-shape.safetensors", "deep-extra.safetensors",
  ];
  for (const name of cases) {
    it(name, () => {
      const m = results.get(name);
      expect(m, `${name}: no result (the child died before it)`).toBeDefined();
      expect(m!.detail ?? "", name).toBe("");
      expect(m!.outcome, `${name}: ${m!.error ?? ""}`).toBe(HOSTILE[name]!.expect);
      if (HOSTILE[name]!.error) expect(m!.error).toMatch(HOSTILE[name]!.error!);
      expect(m!.peakRssBytes).toBeLessThan(MEM_CAP);
    });
  }
});

describe("what should load still loads, as torch.load reads it", () => {
  it("contiguous views of one storage share its bytes (as torch.load shares storages)", async () => {
    const { tensors } = await readTorchCheckpoint(file("contiguous-views.pt"));
    expect(tensors.size).toBe(5000);
    expect(new Set([...tensors.values()].map((t) => t.data.buffer)).size).toBe(1);
    const ours = ["v0", "v7", "v4999"].map((k) => {
      const d = tensors.get(k)!.data as Float32Array;
      return [...d.subarray(0, 3), d.length];
    });
    expect(ours).toEqual(ref.views);
  });

  it("200k items in one APPENDS", async () => {
    const v = (await readTorchCheckpoint(file("appends-200k.pt"))).value as Map<string, unknown>;
    expect((v.get("x") as unknown[]).length).toBe(ref.appends.n);
    expect([...(v.get("w") as { data: Float32Array }).data]).toEqual(ref.appends.w);
  });

  it("a storage no tensor uses is never inflated; the rest loads", async () => {
    const { tensors } = await readTorchCheckpoint(file("storage-bomb-unused.pt"));
    expect([...(tensors.get("w")!.data as Float32Array)]).toEqual([1, 2, 3, 4]);
  });

  it("limits raise the budget for a trusted file: the 256 MiB expanded view then loads, equal to torch.load", async () => {
    await expect(readTorchCheckpoint(file("expand-256mib.pt"))).rejects.toBeInstanceOf(ReadLimitError);
    const w = (await readTorchCheckpoint(file("expand-256mib.pt"), { limits: { minBytes: 2 ** 30 } })).tensors.get("w")!;
    expect(w.shape).toEqual(ref.expand.shape);
    let sum = 0;
    for (const x of w.data as Float32Array) sum += x;
    expect(sum).toBe(ref.expand.sum);
  });

  it("deep safetensors headers: Python's safetensors refuses them too, and the message is short", async () => {
    expect(ref.deep).toEqual(["SafetensorError", "SafetensorError", "SafetensorError"]);
    for (const f of ["dtype", "shape", "extra"]) {
      const err = await readSafetensors(file(`deep-${f}.safetensors`), { mmap: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FormatError);
      expect((err as Error).message.length).toBeLessThan(400);
    }
  });
});
