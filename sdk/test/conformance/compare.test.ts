/** The suite's error figures against numpy computing the same definitions on the same values, in this run. */
import { describe, expect, it } from "vitest";
import { compareTensors, unravel } from "../../src/conformance/compare.js";
import { tensor } from "../../src/tensor/index.js";
import { runPythonJson } from "../helpers/python.js";

function seeded(n: number, seed: number): Float32Array {
  // xorshift: deterministic values in [-1, 1) without a library.
  let x = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 31 - 1;
  });
}

describe("compareTensors", () => {
  it("max abs, max rel, tolerance used, worst element and pass/fail equal numpy's on the same data", () => {
    const a = seeded(12 * 7, 1);
    const b = Float32Array.from(a, (v, i) => v + (i % 5 === 0 ? 3e-5 * seeded(1, i + 3)[0]! : 1e-7));
    b[40] = 0; // a zero reference element exercises the relative floor
    const tol = { abs: 1e-5, rel: 1e-5 };
    const ours = compareTensors(tensor("F32", [12, 7], a), tensor("F32", [12, 7], b), tol);
    const ref = runPythonJson<{ max_abs: number; max_rel: number; margin: number; worst: number[]; allclose: boolean; failing: number }>(`
import json, sys, numpy as np
a = np.array(json.loads(sys.argv[1]), dtype=np.float32).reshape(12, 7)
b = np.array(json.loads(sys.argv[2]), dtype=np.float32).reshape(12, 7)
d = np.abs(a.astype(np.float64) - b.astype(np.float64))
rel = d / np.maximum(np.abs(b.astype(np.float64)), 1e-5)
used = d / (1e-5 + 1e-5 * np.abs(b.astype(np.float64)))
print(json.dumps({"max_abs": float(d.max()), "max_rel": float(rel.max()), "margin": float(used.max()), "worst": [int(i) for i in np.unravel_index(int(d.argmax()), d.shape)],
                  "allclose": bool(np.allclose(a, b, rtol=1e-5, atol=1e-5)), "failing": int((d > 1e-5 + 1e-5 * np.abs(b)).sum())}))
`, [JSON.stringify(Array.from(a)), JSON.stringify(Array.from(b))]);
    expect(ours.max_abs).toBeCloseTo(ref.max_abs, 12);
    expect(ours.max_rel).toBeCloseTo(ref.max_rel, 6);
    expect(ours.margin / ref.margin).toBeCloseTo(1, 5);
    expect(ours.margin <= 1).toBe(ref.allclose);
    expect(ours.worst_index).toEqual(ref.worst);
    expect(ours.passed).toBe(ref.allclose);
    expect(ours.failing).toBe(ref.failing);
  });

  it("tolerance used: a passing element can have |a − b| / |b| far above rel (abs dominates), and still use ≤ 1", () => {
    const tol = { abs: 1e-4, rel: 1e-4 };
    const b = Float32Array.of(0.01, 100, -3);
    const a = Float32Array.of(0.01 + 5e-5, 100 + 2e-3, -3);
    const r = compareTensors(tensor("F32", [3], a), tensor("F32", [3], b), tol);
    expect(r.passed).toBe(true);
    expect(r.max_rel).toBeGreaterThan(10 * tol.rel); // what the old report showed: reads like a failure
    const used = [0, 1, 2].map((i) => Math.abs(a[i]! - b[i]!) / (tol.abs + tol.rel * Math.abs(b[i]!)));
    expect(r.margin).toBeCloseTo(Math.max(...used), 6);
    expect(r.margin).toBeLessThan(1);
    const off = compareTensors(tensor("F32", [1], Float32Array.of(1.01)), tensor("F32", [1], Float32Array.of(1)), tol);
    expect(off.passed).toBe(false);
    expect(off.margin).toBeGreaterThan(1);
  });

  it("fails on NaN in one side only, passes NaN in both, and reports shape mismatches", () => {
    const tol = { abs: 1e-5, rel: 0 };
    expect(compareTensors(tensor("F32", [2], Float32Array.of(1, NaN)), tensor("F32", [2], Float32Array.of(1, 2)), tol).passed).toBe(false);
    expect(compareTensors(tensor("F32", [2], Float32Array.of(1, NaN)), tensor("F32", [2], Float32Array.of(1, NaN)), tol).passed).toBe(true);
    const m = compareTensors(tensor("F32", [2, 3]), tensor("F32", [3, 2]), tol);
    expect(m.passed).toBe(false);
    expect(m.shape_mismatch).toMatch(/\[2, 3\] vs reference \[3, 2\]/);
  });

  it("compares F16 and BF16 storage through their F32 values", () => {
    const f16 = tensor("F16", [2], Uint16Array.of(0x3c00, 0x4000)); // 1, 2
    const bf16 = tensor("BF16", [2], Uint16Array.of(0x3f80, 0x4000)); // 1, 2
    expect(compareTensors(f16, bf16, { abs: 0, rel: 0 }).max_abs).toBe(0);
  });

  it("unravels flat indices row-major", () => {
    expect(unravel(0, [3, 4])).toEqual([0, 0]);
    expect(unravel(11, [3, 4])).toEqual([2, 3]);
    expect(unravel(13, [2, 3, 4])).toEqual([1, 0, 1]);
  });
});
