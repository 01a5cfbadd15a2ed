/**
 * Truncated SVD for combining adapters, in float64: M ≈ (U·S)·Vh with the k largest singular values.
 * Small dense matrices go through the Gram matrix of the smaller side and a symmetric eigen-decomposition
 * (Householder tridiagonalisation + implicit QL, as in EISPACK tred2/tql2): O(min(m,n)²·max(m,n)). Larger
 * ones (smaller side above `DENSE_LIMIT`) use block subspace iteration with Rayleigh–Ritz, run until the
 * Ritz values stop moving (O(m·n·(k+p)) per step). A product L·R of thin factors goes through QR of each
 * factor first, so only a (Σr)×(Σr) core is decomposed. Signs of singular vectors are arbitrary, as in LAPACK.
 */

export interface TruncatedSvd {
  /** `[rows, k]` row-major: U·diag(S). */
  readonly US: Float64Array;
  /** `[k, cols]` row-major: Vh (orthonormal rows where the singular value is non-zero, else zeros). */
  readonly Vh: Float64Array;
  /** The k singular values, descending. */
  readonly S: Float64Array;
  readonly k: number;
}

/** Above this smaller dimension, dense matrices take the iterative path. */
export const DENSE_LIMIT = 384;

/** Top-k SVD of a dense row-major `[rows, cols]` matrix (`denseLimit`: see `DENSE_LIMIT`). */
export function truncatedSvd(M: ArrayLike<number>, rows: number, cols: number, k: number, denseLimit = DENSE_LIMIT): TruncatedSvd {
  const block = Math.min(Math.min(rows, cols), 2 * k + 10);
  if (Math.min(rows, cols) > denseLimit && 2 * block < Math.min(rows, cols)) return subspaceIterationSvd(M, rows, cols, k, block);
  return gramSvd(M, rows, cols, k);
}

/**
 * Block subspace iteration: Q spans M·(MᵀM)ʲ·Ω for a fixed pseudo-random Ω of `block` columns, re-orthonormalised
 * each half-step; stops when the top-k Ritz values change by ≤ 1e-12·σ₁ (the subspace then agrees with the exact
 * one to ~1e-6), or after 300 steps (a flat spectrum at k, where truncation itself is ill-posed). The Ritz step
 * is an exact SVD of the small Qᵀ·M.
 */
function subspaceIterationSvd(M: ArrayLike<number>, rows: number, cols: number, k: number, block: number): TruncatedSvd {
  let seed = 0x2545f491;
  const omega = Float64Array.from({ length: cols * block }, () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32 - 0.5;
  });
  let Q = thinQr(multiply(M, rows, cols, omega, block), rows, block).Q;
  let previous: Float64Array | undefined;
  let ritz: TruncatedSvd | undefined;
  for (let step = 0; step < 300; step++) {
    const Z = thinQr(multiplyTransposed(M, rows, cols, Q, block), cols, block).Q;
    Q = thinQr(multiply(M, rows, cols, Z, block), rows, block).Q;
    if (step % 4 !== 3 && step > 0) continue;
    ritz = gramSvd(multiplyTransposed(M, rows, cols, Q, block, true), block, cols, k);
    const S = ritz.S;
    if (previous && S.every((v, i) => Math.abs(v - previous![i]!) <= 1e-12 * S[0]!)) break;
    previous = Float64Array.from(S);
  }
  const small = ritz!;
  const US = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let a = 0; a < block; a++) s += Q[i * block + a]! * small.US[a * k + c]!;
      US[i * k + c] = s;
    }
  }
  return { US, Vh: small.Vh, S: small.S, k };
}

/** M·X: M `[rows, cols]`, X `[cols, p]` → `[rows, p]`. */
function multiply(M: ArrayLike<number>, rows: number, cols: number, X: Float64Array, p: number): Float64Array {
  const Y = new Float64Array(rows * p);
  for (let i = 0; i < rows; i++) {
    const yo = i * p;
    for (let j = 0; j < cols; j++) {
      const m = M[i * cols + j]!;
      if (m === 0) continue;
      const xo = j * p;
      for (let c = 0; c < p; c++) Y[yo + c]! += m * X[xo + c]!;
    }
  }
  return Y;
}

/** Mᵀ·Q: M `[rows, cols]`, Q `[rows, p]` → `[cols, p]`; or, with `asRows`, its transpose Qᵀ·M `[p, cols]`. */
function multiplyTransposed(M: ArrayLike<number>, rows: number, cols: number, Q: Float64Array, p: number, asRows = false): Float64Array {
  const Z = new Float64Array(cols * p);
  for (let i = 0; i < rows; i++) {
    const qo = i * p;
    for (let j = 0; j < cols; j++) {
      const m = M[i * cols + j]!;
      if (m === 0) continue;
      const zo = j * p;
      for (let c = 0; c < p; c++) Z[zo + c]! += m * Q[qo + c]!;
    }
  }
  if (!asRows) return Z;
  const T = new Float64Array(p * cols);
  for (let j = 0; j < cols; j++) for (let c = 0; c < p; c++) T[c * cols + j] = Z[j * p + c]!;
  return T;
}

/** Exact top-k SVD through the Gram matrix of the smaller side. */
function gramSvd(M: ArrayLike<number>, rows: number, cols: number, k: number): TruncatedSvd {
  if (rows >= cols) {
    // G = MᵀM = V·S²·Vᵀ; then U·S = M·V needs no division.
    const G = new Float64Array(cols * cols);
    for (let i = 0; i < rows; i++) {
      const o = i * cols;
      for (let a = 0; a < cols; a++) {
        const x = M[o + a]!;
        if (x === 0) continue;
        const go = a * cols;
        for (let b = a; b < cols; b++) G[go + b]! += x * M[o + b]!;
      }
    }
    symmetrize(G, cols);
    const { values, vectors } = symmetricEigen(G, cols);
    const order = descending(values);
    const US = new Float64Array(rows * k);
    const Vh = new Float64Array(k * cols);
    const S = new Float64Array(k);
    for (let c = 0; c < k; c++) {
      const e = order[c]!;
      S[c] = Math.sqrt(Math.max(values[e]!, 0));
      for (let j = 0; j < cols; j++) Vh[c * cols + j] = vectors[j * cols + e]!;
    }
    for (let i = 0; i < rows; i++) {
      const o = i * cols;
      for (let c = 0; c < k; c++) {
        let s = 0;
        const vo = c * cols;
        for (let j = 0; j < cols; j++) s += M[o + j]! * Vh[vo + j]!;
        US[i * k + c] = s;
      }
    }
    return { US, Vh, S, k };
  }
  // rows < cols: G = M·Mᵀ = U·S²·Uᵀ; Vh = Uᵀ·M / S.
  const G = new Float64Array(rows * rows);
  for (let a = 0; a < rows; a++) {
    const oa = a * cols;
    for (let b = a; b < rows; b++) {
      const ob = b * cols;
      let s = 0;
      for (let j = 0; j < cols; j++) s += M[oa + j]! * M[ob + j]!;
      G[a * rows + b] = s;
    }
  }
  symmetrize(G, rows);
  const { values, vectors } = symmetricEigen(G, rows);
  const order = descending(values);
  const US = new Float64Array(rows * k);
  const Vh = new Float64Array(k * cols);
  const S = new Float64Array(k);
  const sMax = Math.sqrt(Math.max(values[order[0]!]!, 0));
  for (let c = 0; c < k; c++) {
    const e = order[c]!;
    const sigma = Math.sqrt(Math.max(values[e]!, 0));
    S[c] = sigma;
    for (let i = 0; i < rows; i++) US[i * k + c] = vectors[i * rows + e]! * sigma;
    // A direction with (numerically) no energy carries nothing; its Vh row stays zero.
    if (!(sigma > 1e-12 * sMax)) continue;
    const vo = c * cols;
    for (let i = 0; i < rows; i++) {
      const u = vectors[i * rows + e]! / sigma;
      if (u === 0) continue;
      const o = i * cols;
      for (let j = 0; j < cols; j++) Vh[vo + j]! += u * M[o + j]!;
    }
  }
  return { US, Vh, S, k };
}

/**
 * Top-k SVD of L·R without forming it: L `[rows, r]`, R `[r, cols]` (row-major). L = Q₁R₁, Rᵀ = Q₂R₂,
 * L·R = Q₁·(R₁R₂ᵀ)·Q₂ᵀ, and only the r×r core is decomposed.
 */
export function truncatedSvdOfProduct(L: ArrayLike<number>, R: ArrayLike<number>, rows: number, r: number, cols: number, k: number): TruncatedSvd {
  const q1 = thinQr(L, rows, r);
  const Rt = new Float64Array(cols * r);
  for (let a = 0; a < r; a++) for (let j = 0; j < cols; j++) Rt[j * r + a] = R[a * cols + j]!;
  const q2 = thinQr(Rt, cols, r);
  // core = R₁·R₂ᵀ  [r, r]
  const core = new Float64Array(r * r);
  for (let a = 0; a < r; a++) {
    for (let b = 0; b < r; b++) {
      let s = 0;
      for (let c = 0; c < r; c++) s += q1.R[a * r + c]! * q2.R[b * r + c]!;
      core[a * r + b] = s;
    }
  }
  const kc = Math.min(k, r);
  const small = gramSvd(core, r, r, kc);
  const US = new Float64Array(rows * k);
  const Vh = new Float64Array(k * cols);
  for (let i = 0; i < rows; i++) {
    for (let c = 0; c < kc; c++) {
      let s = 0;
      for (let a = 0; a < r; a++) s += q1.Q[i * r + a]! * small.US[a * kc + c]!;
      US[i * k + c] = s;
    }
  }
  for (let c = 0; c < kc; c++) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let a = 0; a < r; a++) s += small.Vh[c * r + a]! * q2.Q[j * r + a]!;
      Vh[c * cols + j] = s;
    }
  }
  const S = new Float64Array(k);
  S.set(small.S);
  return { US, Vh, S, k };
}

/** Thin QR by modified Gram–Schmidt with one re-orthogonalisation; dependent columns give zero Q columns. */
function thinQr(X: ArrayLike<number>, rows: number, cols: number): { Q: Float64Array; R: Float64Array } {
  const Q = Float64Array.from({ length: rows * cols }, (_, i) => X[i]!);
  const R = new Float64Array(cols * cols);
  const norms = new Float64Array(cols);
  for (let j = 0; j < cols; j++) {
    let n = 0;
    for (let i = 0; i < rows; i++) n += Q[i * cols + j]! ** 2;
    norms[j] = Math.sqrt(n);
  }
  for (let j = 0; j < cols; j++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < j; p++) {
        let d = 0;
        for (let i = 0; i < rows; i++) d += Q[i * cols + p]! * Q[i * cols + j]!;
        R[p * cols + j]! += d;
        for (let i = 0; i < rows; i++) Q[i * cols + j]! -= d * Q[i * cols + p]!;
      }
    }
    let n = 0;
    for (let i = 0; i < rows; i++) n += Q[i * cols + j]! ** 2;
    n = Math.sqrt(n);
    if (n <= 1e-13 * norms[j]! || n === 0) {
      for (let i = 0; i < rows; i++) Q[i * cols + j] = 0;
      continue;
    }
    R[j * cols + j] = n;
    for (let i = 0; i < rows; i++) Q[i * cols + j]! /= n;
  }
  return { Q, R };
}

function symmetrize(G: Float64Array, n: number): void {
  for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) G[b * n + a] = G[a * n + b]!;
}

function descending(values: Float64Array): number[] {
  return [...values.keys()].sort((a, b) => values[b]! - values[a]! || a - b);
}

/** Eigen-decomposition of a symmetric row-major n×n matrix: eigenvectors are the columns of `vectors`. */
export function symmetricEigen(A: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const V = Float64Array.from(A);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 1) {
    V[0] = 1;
    d[0] = A[0]!;
    return { values: d, vectors: V };
  }
  tridiagonalize(V, d, e, n);
  implicitQl(V, d, e, n);
  return { values: d, vectors: V };
}

/** Householder reduction to tridiagonal form (EISPACK tred2), accumulating the transformations in V. */
function tridiagonalize(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k]! /= scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        V[j * n + i] = f;
        g = e[j]! + V[j * n + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j]! * d[k]!;
          e[k]! += V[k * n + j]! * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j]! /= h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j]! -= hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) V[k * n + j]! -= f * e[k]! + g * d[k]!;
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i]!;
    V[i * n + i] = 1;
    const h = d[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1]! / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1]! * V[k * n + j]!;
        for (let k = 0; k <= i; k++) V[k * n + j]! -= g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j]!;
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/** Symmetric tridiagonal QL with implicit shifts (EISPACK tql2); eigenvalues into d, vectors into V's columns. */
function implicitQl(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      do {
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i]! -= h;
        f += h;
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          for (let k = 0; k < n; k++) {
            const o = k * n;
            h = V[o + i + 1]!;
            V[o + i + 1] = s * V[o + i]! + c * h;
            V[o + i] = c * V[o + i]! - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
}
