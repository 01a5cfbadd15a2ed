/**
 * Merge benchmark: an r=16 adapter on attention and MLP projections merged into a F32 and a BF16 base, file to
 * file, by loraport (`mergeModel`) and by PEFT (`from_pretrained` + `merge_and_unload` + `save_pretrained`,
 * timed inside Python), on the same files in the same run, next to the memory-bandwidth limit: bytes read and
 * written over the memcpy rate measured in this run. Full: ~1.76 GB F32 / 0.88 GB BF16; --quick: ~270 MB.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { mergeModel } from "../src/adapter/merge-model.js";
import { readPeftAdapter } from "../src/adapter/peft-io.js";
import { openSafetensorsModel } from "../src/formats/safetensors/index.js";
import { toFloat32 } from "../src/tensor/index.js";
import type { BenchOptions, BenchResult, BenchRow, BenchRatio, BenchSuite } from "./types.js";

const REPO = resolve(import.meta.dirname, "../..");
const PYTHON = join(REPO, ".venv/bin/python");
const SCRIPT = readFileSync(join(import.meta.dirname, "merge_reference.py"), "utf8");

function python(args: string[]): unknown {
  const out = execFileSync(PYTHON, ["-c", SCRIPT, ...args], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
    env: { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error", HF_HUB_OFFLINE: "1", TQDM_DISABLE: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines = out.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!);
}

/** Bytes read + written per second by a large TypedArray copy (best of a few). */
function memcpyRate(): number {
  const n = 256 << 20;
  const a = new Uint8Array(n).fill(1);
  const b = new Uint8Array(n);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    b.set(a);
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return (2 * n) / best;
}

/** Max |a − b| over every tensor of two models (same names). */
async function maxAbsDiff(a: string, b: string): Promise<number> {
  const x = await openSafetensorsModel(a);
  const y = await openSafetensorsModel(b);
  try {
    let worst = 0;
    for (const n of x.names) {
      const p = toFloat32(await x.read(n));
      const q = toFloat32(await y.read(n));
      for (let i = 0; i < p.length; i++) worst = Math.max(worst, Math.abs(p[i]! - q[i]!));
    }
    return worst;
  } finally {
    await x.close();
    await y.close();
  }
}

async function run(opts: BenchOptions): Promise<BenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "loraport-bench-merge-"));
  const log = (s: string) => opts.verbose && process.stderr.write(`  merge: ${s}\n`);
  try {
    const size = opts.quick ? "quick" : "full";
    log(`building ${size} bases and adapter with PEFT…`);
    const made = python(["make", dir, size]) as { params: number; f32_bytes: number };
    const rate = memcpyRate();
    const rows: BenchRow[] = [];
    const ratios: BenchRatio[] = [];
    const threads = cpus().length;
    for (const dtype of ["f32", "bf16"] as const) {
      const base = join(dir, `base_${dtype}`);
      log(`${dtype}: loraport…`);
      const t0 = performance.now();
      const { adapter } = await readPeftAdapter(join(dir, "adapter"));
      const report = await mergeModel(base, adapter, join(dir, `ours_${dtype}`));
      const ours = (performance.now() - t0) / 1000;
      log(`${dtype}: PEFT, 1 thread…`);
      const p1 = python(["time", base, join(dir, "adapter"), join(dir, `peft1_${dtype}`), "1"]) as { total_s: number; load_s: number; merge_s: number; save_s: number };
      log(`${dtype}: PEFT, ${threads} threads…`);
      const pN = python(["time", base, join(dir, "adapter"), join(dir, `peftN_${dtype}`), String(threads)]) as { total_s: number };
      const bytes = report.bytesRead + report.bytesWritten;
      const limit = bytes / rate;
      const diff = await maxAbsDiff(join(dir, `ours_${dtype}`), join(dir, `peft1_${dtype}`));
      const label = `${dtype.toUpperCase()} base ${(report.bytesRead / 1e9).toFixed(2)} GB`;
      rows.push({ name: `merge ${label}, file → file`, values: { loraport: ours, "PEFT 1 thread": p1.total_s, [`PEFT ${threads} threads`]: pN.total_s, "memory-bound limit": limit }, unit: "s" });
      for (const [phase, v] of [["load", p1.load_s], ["merge_and_unload", p1.merge_s], ["save_pretrained", p1.save_s]] as const) {
        rows.push({ name: `  of which PEFT ${phase}`, values: { "PEFT 1 thread": v }, unit: "s" });
      }
      rows.push({ name: `  max abs diff loraport vs PEFT, all ${report.tensors} tensors (${dtype})`, values: { loraport: diff }, unit: "abs" });
      ratios.push({ name: `${dtype} loraport / PEFT (1 thread, as loraport)`, ratio: ours / p1.total_s, target: 1 });
      ratios.push({ name: `${dtype} loraport / PEFT (${threads} threads)`, ratio: ours / pN.total_s, note: "PEFT with every core; loraport computes on one" });
      ratios.push({ name: `${dtype} loraport / memory-bound limit`, ratio: ours / limit, note: `${(bytes / 1e9).toFixed(2)} GB read+written at the measured ${(rate / 1e9).toFixed(1)} GB/s memcpy rate` });
      rmSync(join(dir, `ours_${dtype}`), { recursive: true, force: true });
      rmSync(join(dir, `peft1_${dtype}`), { recursive: true, force: true });
      rmSync(join(dir, `peftN_${dtype}`), { recursive: true, force: true });
    }
    return {
      suite: "merge",
      rows,
      ratios,
      conditions: {
        base: `Llama-shaped, ${(made.params / 1e6).toFixed(0)}M params (${(made.f32_bytes / 1e9).toFixed(2)} GB F32)`,
        adapter: "PEFT LoRA r=16, alpha=32 on q/k/v/o/gate/up/down",
        cores: threads,
        memcpy: `${(rate / 1e9).toFixed(1)} GB/s (bytes read+written per second, TypedArray.set of 256 MiB)`,
        note: "loraport fsyncs its output (atomic write); PEFT's save_pretrained does not",
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const mergeBench: BenchSuite = { name: "merge", run };
