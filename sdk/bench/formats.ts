/**
 * Formats benchmark: reading every tensor of a 1 GiB safetensors file (128 MiB with --quick) and writing it,
 * loraport vs Python `safetensors.torch.load_file` / `save_file`, next to a plain read of the same bytes
 * (the physical limit). Best of 3 each; Python is timed inside Python around the call only. The file is in
 * the page cache for every contender (it was just written).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readExactly } from "../src/formats/atomic-file.js";
import { mmapAvailable } from "../src/formats/mmap.js";
import { readSafetensors, writeSafetensors } from "../src/formats/safetensors/index.js";
import type { Tensor } from "../src/tensor/index.js";
import { fromBytes } from "../src/tensor/index.js";
import { timeIt, touchEveryPage } from "./measure.js";
import type { BenchOptions, BenchResult, BenchSuite } from "./types.js";

const REPO = resolve(import.meta.dirname, "../..");
const PYTHON = join(REPO, ".venv/bin/python");
const SCRIPT = readFileSync(join(import.meta.dirname, "formats_reference.py"), "utf8");
const REPEATS = 3;

/** A state dict of `totalBytes`: mostly 16 MiB F32 matrices, some BF16, a few small vectors (like a model file). */
function stateDict(totalBytes: number): Map<string, Tensor> {
  const sd = new Map<string, Tensor>();
  const big = 16 << 20;
  let left = totalBytes;
  for (let i = 0; left > 0; i++) {
    const small = 4096 * 4;
    const take = Math.min(left, big);
    const bytes = new Uint8Array(take);
    for (let j = 0; j < take; j += 4096) bytes[j] = (i * 31 + j) & 0xff;
    if (i % 4 === 3) sd.set(`layers.${i}.mlp.weight`, fromBytes("BF16", [take / 2 / 1024, 1024], bytes));
    else sd.set(`layers.${i}.attn.weight`, fromBytes("F32", [take / 4 / 1024, 1024], bytes));
    if (left - take > small) {
      sd.set(`layers.${i}.norm.weight`, fromBytes("F32", [small / 4], new Uint8Array(small)));
      left -= small;
    }
    left -= take;
  }
  return sd;
}

/** Best of REPEATS, in seconds. */
async function best(fn: () => Promise<unknown>): Promise<number> {
  return Math.min(...(await timeIt(REPEATS, fn))) / 1000;
}

export const formatsSuite: BenchSuite = {
  name: "formats",
  async run(opts: BenchOptions): Promise<BenchResult> {
    const total = opts.quick ? 128 << 20 : 1 << 30;
    const dir = mkdtempSync(join(tmpdir(), "loraport-bench-formats-"));
    try {
      const path = join(dir, "bench.safetensors");
      const sd = stateDict(total);
      await writeSafetensors(path, sd, { format: "pt" });
      sd.clear();
      const size = statSync(path).size;
      if (opts.verbose) process.stderr.write(`bench formats: ${(size / 2 ** 20).toFixed(0)} MiB file written\n`);

      const plainRead = await best(async () => {
        const fh = await open(path, "r");
        try {
          await readExactly(fh, 0, size, path);
        } finally {
          await fh.close();
        }
      });
      let loaded: Map<string, Tensor> | undefined;
      // The default for a file this big: memory-mapped, tensor by tensor (like load_file), where the helper is built.
      const mapped = mmapAvailable();
      const ourRead = await best(async () => {
        loaded = undefined;
        loaded = (await readSafetensors(path)).tensors;
      });
      const ourTouched = await best(async () => {
        loaded = undefined;
        loaded = (await readSafetensors(path)).tensors;
        touchEveryPage(loaded.values());
      });
      const ourCopy = await best(async () => {
        loaded = undefined;
        loaded = (await readSafetensors(path, { mmap: false })).tensors;
      });
      // Each write goes to a new name and the files are removed after timing, as the Python side does
      // (os.remove is outside its timed region; removing a just-written GiB file costs ~50 ms here).
      let writeNo = 0;
      const ourWrite = await best(async () => {
        await writeSafetensors(join(dir, `ts-out-${writeNo++}.safetensors`), loaded!, { format: "pt" });
      });
      for (let i = 0; i < writeNo; i++) rmSync(join(dir, `ts-out-${i}.safetensors`));
      loaded = undefined;

      if (opts.verbose) process.stderr.write("bench formats: timing Python safetensors…\n");
      const out = execFileSync(PYTHON, ["-c", SCRIPT, path, dir, String(REPEATS)], { encoding: "utf8", maxBuffer: 1 << 20, env: { ...process.env, PYTHONWARNINGS: "ignore" } });
      const py = JSON.parse(out.trim().split("\n").pop()!) as { read: number[]; read_touched: number[]; write: number[]; write_fsync: number[]; safetensors: string; torch: string };
      const pyRead = Math.min(...py.read);
      const pyTouched = Math.min(...py.read_touched);
      const pyWrite = Math.min(...py.write);
      const pyWriteFsync = Math.min(...py.write_fsync);
      const gbps = (s: number) => size / s / 1e9;
      return {
        suite: "formats",
        conditions: {
          file: `${(size / 2 ** 20).toFixed(0)} MiB safetensors, page cache warm`,
          repeats: `best of ${REPEATS}`,
          loraport: mapped ? "memory-mapped (native helper built)" : "fs.read copies (native mmap helper not built)",
          python: `safetensors ${py.safetensors}, torch ${py.torch}`,
        },
        rows: [
          { name: "read every tensor", values: { loraport: ourRead, python: pyRead, "loraport+touch": ourTouched, "python+touch": pyTouched, "loraport copy": ourCopy, "plain read": plainRead }, unit: "s" },
          { name: "write the file", values: { loraport: ourWrite, python: pyWrite, "python+fsync": pyWriteFsync }, unit: "s" },
          { name: "read throughput", values: { loraport: gbps(ourRead), python: gbps(pyRead), "loraport+touch": gbps(ourTouched), "python+touch": gbps(pyTouched), "loraport copy": gbps(ourCopy), "plain read": gbps(plainRead) }, unit: "GB/s" },
          { name: "write throughput", values: { loraport: gbps(ourWrite), python: gbps(pyWrite), "python+fsync": gbps(pyWriteFsync) }, unit: "GB/s" },
        ],
        ratios: [
          { name: "read loraport / python load_file", ratio: ourRead / pyRead, target: 1.0, note: mapped ? "both memory-map: no byte is read until used" : "loraport copies (native mmap helper not built); load_file maps lazily" },
          { name: "read + touch every page: loraport / python", ratio: ourTouched / pyTouched, target: 1.0, note: "data in memory on both sides" },
          { name: "read loraport copy (mmap: false) / plain read", ratio: ourCopy / plainRead, note: "1.0 = the physical limit for a copying reader" },
          { name: "write loraport / python save_file", ratio: ourWrite / pyWrite, target: 1.0, note: "loraport fsyncs, save_file does not" },
          { name: "write loraport / python save_file + fsync", ratio: ourWrite / pyWriteFsync, target: 1.0 },
        ],
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
