/**
 * The one definition of the suite's error figures (the Python side computes reference numbers only).
 * For a candidate `a` and reference `b` of the same shape:
 *   max_abs = max |a − b|;  max_rel = max |a − b| / max(|b|, tol.abs)  (the floor keeps near-zero elements from
 *   dominating);  passed ⇔ every element has |a − b| ≤ tol.abs + tol.rel·|b| (numpy.allclose), and no NaN/Inf
 *   appears in one side but not at the same place in the other;  margin = max |a − b| / (tol.abs + tol.rel·|b|),
 *   the share of the tolerance the worst element used (≤ 1 ⇔ passed, for finite values).
 */
import type { Tensor } from "../tensor/tensor.js";
import { toFloat32 } from "../tensor/tensor-impl.js";
import type { Tolerance } from "./case.js";

export interface TensorComparison {
  readonly max_abs: number;
  readonly max_rel: number;
  /** max |a − b| / (tol.abs + tol.rel·|b|): what the tolerance bounds; ≤ 1 passes. */
  readonly margin: number;
  /** Multi-index of the element with the largest absolute error (first one on ties). */
  readonly worst_index: number[];
  readonly worst_a: number;
  readonly worst_b: number;
  readonly passed: boolean;
  /** Elements outside the tolerance. */
  readonly failing: number;
  readonly numel: number;
  /** Set when the shapes differ (then nothing else is meaningful). */
  readonly shape_mismatch?: string;
}

export function unravel(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d]!;
    idx[d] = n === 0 ? 0 : flat % n;
    flat = n === 0 ? 0 : Math.floor(flat / n);
  }
  return idx;
}

export function compareTensors(a: Tensor, b: Tensor, tol: Tolerance): TensorComparison {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    return { max_abs: Infinity, max_rel: Infinity, margin: Infinity, worst_index: [], worst_a: NaN, worst_b: NaN, passed: false, failing: 0, numel: 0,
      shape_mismatch: `shape [${a.shape.join(", ")}] vs reference [${b.shape.join(", ")}]` };
  }
  const x = toFloat32(a);
  const y = toFloat32(b);
  let maxAbs = 0;
  let maxRel = 0;
  let margin = 0;
  let worst = 0;
  let failing = 0;
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    const yi = y[i]!;
    let d = Math.abs(xi - yi);
    if (Number.isNaN(d)) d = Number.isNaN(xi) && Number.isNaN(yi) ? 0 : Infinity; // NaN in one side only is an error
    else if (xi === yi) d = 0; // equal infinities
    const ay = Math.abs(yi);
    if (d > maxAbs || (i === 0 && d === 0)) {
      if (d > maxAbs) worst = i;
      maxAbs = Math.max(maxAbs, d);
    }
    const rel = d / Math.max(Number.isFinite(ay) ? ay : 0, tol.abs || Number.MIN_VALUE);
    if (rel > maxRel) maxRel = rel;
    const bound = tol.abs + tol.rel * (Number.isFinite(ay) ? ay : 0);
    const used = d === 0 ? 0 : d / bound; // d > 0 with a zero bound: Infinity
    if (used > margin) margin = used;
    if (!(d <= bound)) failing++;
  }
  return { max_abs: maxAbs, max_rel: maxRel, margin, worst_index: unravel(worst, a.shape), worst_a: x[worst] ?? NaN, worst_b: y[worst] ?? NaN,
    passed: failing === 0, failing, numel: x.length };
}
