/**
 * Fuzz worker (a child process): runs a range of cases, or a list of files, through `checkFile` and reports each
 * result to the parent over IPC. The parent owns the time and crash accounting: a case that kills this process
 * or runs past its limit is blamed on the case after the last one reported. Peak memory is checked after each
 * case; past the cap the case is a defect and the worker stops (the parent starts a fresh one).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkFile } from "./check-file.js";
import { makeCase } from "./mutate.js";
import { loadSeeds } from "./seeds.js";

export interface WorkerSpec {
  readonly seedDir?: string;
  readonly runSeed?: number;
  readonly start?: number;
  readonly count?: number;
  /** Instead of generated cases: check these files (regression tests), reported as cases 0..n-1. */
  readonly files?: readonly string[];
  readonly tmpDir: string;
  readonly memCapBytes: number;
}

export interface WorkerMessage {
  readonly i: number;
  readonly outcome: "ok" | "typed" | "defect";
  readonly detail?: string;
  readonly error?: string;
  readonly mutation?: string;
  readonly peakRssBytes: number;
  /** Time to build and check the case. */
  readonly ms: number;
}

const spec = JSON.parse(process.argv[2]!) as WorkerSpec;
const gc = (globalThis as { gc?: () => void }).gc;

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve) => process.send!(m, undefined, {}, () => resolve()));
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(spec.tmpDir, `w${process.pid}-`));
  try {
    const seeds = spec.seedDir ? loadSeeds(spec.seedDir) : [];
    const total = spec.files ? spec.files.length : spec.count!;
    for (let k = 0; k < total; k++) {
      const t0 = performance.now();
      let path: string;
      let mutation: string | undefined;
      let i: number;
      if (spec.files) {
        i = k;
        path = spec.files[k]!;
      } else {
        i = spec.start! + k;
        const c = makeCase(seeds, spec.runSeed!, i);
        mutation = c.mutation;
        path = join(dir, `case-${i}`);
        writeFileSync(path, c.bytes);
      }
      let result = await checkFile(path);
      if (!spec.files) rmSync(path, { force: true });
      if (k % 64 === 63) gc?.(); // mapped tensors are freed by GC: keep their mappings from piling up
      const peak = process.resourceUsage().maxRSS * 1024;
      if (peak > spec.memCapBytes && result.outcome !== "defect") {
        result = { outcome: "defect", detail: `memory: peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB, over the ${(spec.memCapBytes / 2 ** 20).toFixed(0)} MiB cap` };
      }
      await send({ i, outcome: result.outcome, ...(result.detail ? { detail: result.detail } : {}), ...(result.error ? { error: result.error } : {}), ...(mutation ? { mutation } : {}), peakRssBytes: peak, ms: performance.now() - t0 });
      if (peak > spec.memCapBytes) return; // a fresh process for the rest: this one's peak is spent
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.disconnect?.();
