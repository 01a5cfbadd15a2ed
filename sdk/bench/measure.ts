/** Timing and statistics helpers the benchmark suites share. */
import { bytesOf, type Tensor } from "../src/tensor/index.js";

/** The q-quantile of an ascending array (nearest rank). */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export function median(xs: readonly number[]): number {
  return quantile([...xs].sort((a, b) => a - b), 0.5);
}

/** Wall-clock milliseconds of `reps` sequential runs of `fn`. */
export async function timeIt(reps: number, fn: () => Promise<unknown> | unknown): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

/**
 * One byte of every 4 KiB page of each tensor (as the Python sides do): memory-mapped bytes are only read when
 * touched, so a fair comparison with a copying path touches them.
 */
export function touchEveryPage(tensors: Iterable<Tensor>): number {
  let sum = 0;
  for (const t of tensors) {
    const b = bytesOf(t);
    for (let i = 0; i < b.length; i += 4096) sum += b[i]!;
  }
  return sum;
}
