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
import { readSafetensors, writeSafetensors } from "../src/formats/safetensors/index.js";
import type { Tensor } from "../src/tensor/index.js";
import { fromBytes } from "../src/tensor/index.js";
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

async function best(fn: () => Promise<unknown>): Promise<number> {
  let b = Infinity;
  for (let i = 0; i < REPEATS; i++) {
    const t0 = performance.now();
    await fn();
    b = Math.min(b, (performance.now() - t0) / 1000);
  }
  return b;
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
      const ourRead = await best(async () => {
        loaded = undefined;
        loaded = (await readSafetensors(path)).tensors;
      });
      const ourWrite = await best(async () => {
        const dst = join(dir, "ts-out.safetensors");
        await writeSafetensors(dst, loaded!, { format: "pt" });
        rmSync(dst);
      });
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
          python: `safetensors ${py.safetensors}, torch ${py.torch}`,
        },
        rows: [
          { name: "read every tensor", values: { loraport: ourRead, python: pyRead, "python+touch": pyTouched, "plain read": plainRead }, unit: "s" },
          { name: "write the file", values: { loraport: ourWrite, python: pyWrite, "python+fsync": pyWriteFsync }, unit: "s" },
          { name: "read throughput", values: { loraport: gbps(ourRead), python: gbps(pyRead), "python+touch": gbps(pyTouched), "plain read": gbps(plainRead) }, unit: "GB/s" },
          { name: "write throughput", values: { loraport: gbps(ourWrite), python: gbps(pyWrite), "python+fsync": gbps(pyWriteFsync) }, unit: "GB/s" },
        ],
        ratios: [
          { name: "read loraport / python load_file", ratio: ourRead / pyRead, target: 1.0, note: "load_file mmaps lazily: no byte is read until used" },
          { name: "read loraport / python load_file + touch every page", ratio: ourRead / pyTouched, target: 1.0, note: "data in memory on both sides" },
          { name: "read loraport / plain read", ratio: ourRead / plainRead, note: "1.0 = the physical limit for a copying reader" },
          { name: "write loraport / python save_file", ratio: ourWrite / pyWrite, target: 1.0, note: "loraport fsyncs, save_file does not" },
          { name: "write loraport / python save_file + fsync", ratio: ourWrite / pyWriteFsync, target: 1.0 },
        ],
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
