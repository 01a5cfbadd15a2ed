/**
 * Memory-mapped safetensors reads (the native helper in sdk/native/mmap.c): identical to copied reads on files
 * Python wrote, copy-on-write, and bounds-checked.
 */
import { execSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FormatError } from "../../src/errors.js";
import { mapRanges, mmapAvailable } from "../../src/formats/mmap.js";
import { readSafetensors, writeSafetensors } from "../../src/formats/safetensors/index.js";
import { bytesOf } from "../../src/tensor/index.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { sha256 } from "./fixtures.js";

const tmp = tempDir("loraport-mmap-");
afterAll(() => tmp.cleanup());

const hasCompiler = (() => {
  try {
    execSync("command -v cc", { stdio: "ignore", shell: "/bin/sh" });
    return true;
  } catch {
    return false;
  }
})();

describe("memory-mapped safetensors", () => {
  it("the set-up built the native helper wherever a C compiler exists", () => {
    expect(mmapAvailable()).toBe(hasCompiler && process.platform !== "win32");
  });

  it.runIf(mmapAvailable())("mapped and copied reads give the same tensors on a file Python save_file wrote (every dtype, 20 MB)", async () => {
    const file = join(tmp.dir, "py.safetensors");
    const made = runPythonJson<Record<string, string>>(`
import sys, json, hashlib, torch
from safetensors.torch import save_file
g = torch.Generator().manual_seed(1)
sd = {"big": torch.randn(5_000_000, generator=g)}
for name, dt in dict(F64=torch.float64, F16=torch.float16, BF16=torch.bfloat16, I64=torch.int64, I8=torch.int8, U8=torch.uint8).items():
    sd["w." + name] = (torch.randn(33, 7, generator=g) * 40).to(dt)
sd["flag"] = torch.tensor([True, False, True])
sd["empty"] = torch.zeros(0, 3)
sd["scalar"] = torch.tensor(2.5, dtype=torch.float16)
save_file(sd, sys.argv[1], metadata={"format": "pt"})
def raw(v): return v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
print(json.dumps({k: hashlib.sha256(raw(v)).hexdigest() for k, v in sd.items()}))
`, [file]);
    const mapped = await readSafetensors(file, { mmap: true });
    const copied = await readSafetensors(file, { mmap: false });
    expect([...mapped.tensors.keys()].sort()).toEqual(Object.keys(made).sort());
    for (const [k, t] of mapped.tensors) {
      expect(sha256(t), k).toBe(made[k]);
      expect(t.shape, k).toEqual(copied.tensors.get(k)!.shape);
      expect(sha256(copied.tensors.get(k)!), k).toBe(made[k]);
    }
    // Each tensor has its own mapping, so handing one tensor's buffer on never involves the others.
    const buffers = new Set([...mapped.tensors.values()].filter((t) => t.data.byteLength > 0).map((t) => t.data.buffer));
    expect(buffers.size).toBe([...mapped.tensors.values()].filter((t) => t.data.byteLength > 0).length);
    // The default maps a file this big (20 MB of tensor data > 16 MiB) and gives the same bytes back on write.
    const byDefault = await readSafetensors(file);
    await writeSafetensors(join(tmp.dir, "again.safetensors"), byDefault.tensors, byDefault.metadata);
    expect(readFileSync(join(tmp.dir, "again.safetensors")).equals(readFileSync(file))).toBe(true);
  });

  it.runIf(mmapAvailable())("writing to a mapped tensor changes the tensor, never the file", async () => {
    const file = join(tmp.dir, "cow.safetensors");
    runPythonJson(`
import sys, json, torch
from safetensors.torch import save_file
save_file({"w": torch.arange(1000, dtype=torch.float32)}, sys.argv[1])
print(json.dumps(0))
`, [file]);
    const before = readFileSync(file);
    const { tensors } = await readSafetensors(file, { mmap: true });
    const w = tensors.get("w")!.data as Float32Array;
    w.fill(-1);
    expect(w[999]).toBe(-1);
    expect(readFileSync(file).equals(before)).toBe(true);
    const again = (await readSafetensors(file, { mmap: true })).tensors.get("w")!.data as Float32Array;
    expect(again[999]).toBe(999);
  });

  it.runIf(mmapAvailable())("a tensor at an offset its dtype cannot view in place is copied, with the right values", async () => {
    // A valid file whose F32 tensor starts at data offset 1 (save_file never writes this; other writers may).
    const header = JSON.stringify({ a: { dtype: "U8", shape: [1], data_offsets: [0, 1] }, b: { dtype: "F32", shape: [2], data_offsets: [1, 9] } });
    const pad = " ".repeat((8 - (header.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length + pad.length));
    const f32 = Buffer.from(new Float32Array([1.5, -2.25]).buffer);
    const file = join(tmp.dir, "odd.safetensors");
    writeFileSync(file, Buffer.concat([len, Buffer.from(header + pad), Buffer.from([7]), f32]));
    const { tensors } = await readSafetensors(file, { mmap: true });
    expect(tensors.get("a")!.data[0]).toBe(7);
    expect([...(tensors.get("b")!.data as Float32Array)]).toEqual([1.5, -2.25]);
    expect(Buffer.from(bytesOf(tensors.get("b")!)).equals(f32)).toBe(true);
  });

  it.runIf(mmapAvailable())("a range beyond the end of the file is a FormatError naming the file, not a SIGBUS", () => {
    const file = join(tmp.dir, "short.bin");
    writeFileSync(file, Buffer.alloc(100));
    expect(() => mapRanges(file, [[90, 20]])).toThrow(FormatError);
    expect(() => mapRanges(file, [[90, 20]])).toThrow(/short\.bin.*beyond the file's 100 bytes/);
    expect(() => mapRanges(join(tmp.dir, "missing.bin"), [[0, 1]])).toThrow(/missing\.bin/);
    expect(mapRanges(file, [[100, 0]])![0]!.byteLength).toBe(0);
    expect(() => mapRanges(file, [[0, 10], [95, 10]])).toThrow(/range \[95, 105\) is beyond/); // checked before any is mapped
    expect(mapRanges(file, [[0, 10], [4, 96]])!.map((b) => b.byteLength)).toEqual([10, 96]);
  });
});
