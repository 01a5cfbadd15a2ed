/**
 * LoRA weight updates: ΔW, merge and unmerge for Linear, transformers Conv1D, Embedding, Conv2d and loralib
 * MergedLinear; DoRA merge. Whatever the storage dtype, values are computed in F32 and rounded as PEFT
 * rounds, f32(f32(B·A) · f32(s)), then written back in the base's dtype. The products run in a WebAssembly
 * SIMD kernel (F32 sums, as torch on CPU) when the shape suits it, else in a JS loop (float64 sums).
 */
import { AdapterError, NonFiniteError, ShapeMismatchError, UnsupportedFeatureError } from "../errors.js";
import { fromFloat32, numel, toFloat32, type DType, type Tensor } from "../tensor/index.js";
import { baseWeightShape, isConvKind, moduleDims, moduleRank, type LoraModule } from "./adapter.js";
import { addLowRankWasm, mergeLowRankWasm } from "./lowrank-wasm.js";

/**
 * W[i, :] += s · Σ_k L[i, k] · R[k, :] over a row-major `[rows, cols]` matrix, in place (sign −1 subtracts).
 * L is `[rows, r]`, R is `[r, cols]`. Sums run in F32 (SIMD kernel) or float64 (JS fallback), then round as torch does.
 */
export function addLowRank(W: Float32Array, rows: number, cols: number, L: Float32Array, R: Float32Array, r: number, scaling: number, sign: 1 | -1 = 1): void {
  // Negating s is exact, so W + f32(BA)·(−s) is the same as W − f32(BA)·s.
  if (addLowRankWasm(W, rows, cols, L, R, r, sign * scaling)) return;
  addLowRankJs(W, rows, cols, L, R, r, sign * scaling);
}

/** The portable loop: float64 sums per row, then f32(f32(sum)·f32(s)) added to W. */
function addLowRankJs(W: Float32Array, rows: number, cols: number, L: Float32Array, R: Float32Array, r: number, scaling: number): void {
  const fs = Math.fround(scaling);
  const acc = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    acc.fill(0);
    const lo = i * r;
    for (let k = 0; k < r; k++) {
      const c = L[lo + k]!;
      if (c === 0) continue;
      const ro = k * cols;
      for (let j = 0; j < cols; j++) acc[j]! += c * R[ro + j]!;
    }
    const wo = i * cols;
    for (let j = 0; j < cols; j++) W[wo + j] = W[wo + j]! + Math.fround(Math.fround(acc[j]!) * fs);
  }
}

/** Row-major transpose of a `[rows, cols]` matrix. */
export function transpose2d(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const o = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = x[o + j]!;
  }
  return out;
}

/** The low-rank factors (L, R) with stored weight = L·R: which side is which depends on the layout. */
function factorsForStoredLayout(m: LoraModule): { L: Float32Array; R: Float32Array; rows: number; cols: number; r: number } {
  const r = moduleRank(m);
  const { in: nIn, out } = moduleDims(m);
  const A = toFloat32(m.A);
  const B = toFloat32(m.B);
  if (m.kind === "linear" || isConvKind(m.kind)) return { L: B, R: A, rows: out, cols: nIn, r };
  // Conv1D and Embedding store the weight transposed: W_stored = (B·A)ᵀ = Aᵀ·Bᵀ.
  return { L: transpose2d(A, r, nIn), R: transpose2d(B, out, r), rows: nIn, cols: out, r };
}

/** ΔW = s·B·A in the base weight's stored layout (see `LoraModuleKind`), F32. */
export function deltaWeight(m: LoraModule, scaling: number): Tensor {
  const { L, R, rows, cols, r } = factorsForStoredLayout(m);
  const out = new Float32Array(rows * cols);
  addLowRank(out, rows, cols, L, R, r, scaling);
  return { dtype: "F32", shape: baseWeightShape(m), data: out };
}

export interface MergeOptions {
  /** Names the module in errors. */
  readonly module?: string;
  /** Refuse non-finite results with `NonFiniteError` (PEFT's `safe_merge`). */
  readonly safe?: boolean;
  /** Subtract instead of add. */
  readonly unmerge?: boolean;
  /** Output dtype; default the base's. */
  readonly dtype?: DType;
  /** A reusable buffer for the result (at least `bytes` long); default a fresh array. Used by streaming merges. */
  readonly output?: (bytes: number) => ArrayBuffer;
  /** DoRA merge: receives the per-output norms ‖W + sBA‖ (F32) the merge divided by, so they can be recorded for an unmerge. */
  readonly onDoraNorms?: (norms: Float32Array) => void;
  /** DoRA unmerge: the norms recorded at merge time (`onDoraNorms`); without them a DoRA unmerge is refused. */
  readonly doraNorms?: Float32Array;
}

/** Check a base weight against what the module expects, naming the module and both shapes. */
export function checkBaseShape(base: Tensor, m: LoraModule, module: string): void {
  const want = baseWeightShape(m);
  const same = base.shape.length === want.length && base.shape.every((d, i) => d === want[i]);
  if (!same) {
    throw new ShapeMismatchError(module, `base weight has shape [${base.shape.join(", ")}] but the adapter (${m.kind}, lora_A [${m.A.shape.join(", ")}], lora_B [${m.B.shape.join(", ")}]) needs [${want.join(", ")}]`, want, base.shape);
  }
}

/** Merge (or unmerge) one module into a base weight: W' = W ± ΔW, or the DoRA merge when the module has a magnitude. */
export function mergeWeight(base: Tensor, m: LoraModule, scaling: number, options: MergeOptions = {}): Tensor {
  const module = options.module ?? "module";
  checkBaseShape(base, m, module);
  if (m.magnitude && options.unmerge) return unmergeDora(base, m, scaling, module, options);
  const { L, R, rows, cols, r } = factorsForStoredLayout(m);
  const rowsAreOutputs = m.kind === "linear" || isConvKind(m.kind);
  const finish = (W: Float32Array): void => {
    if (m.magnitude) {
      const norms = applyDoraFactor(W, rows, cols, toFloat32(m.magnitude), rowsAreOutputs, module);
      options.onDoraNorms?.(norms);
    }
    if (options.safe) assertFinite(W, module);
  };
  const outDtype = options.dtype ?? base.dtype;
  // Negating s is exact, so W + f32(BA)·(−s) is the same as W − f32(BA)·s.
  const s = options.unmerge ? -scaling : scaling;
  const viaWasm = mergeLowRankWasm(base, rows, cols, L, R, r, s, outDtype, finish, options.output);
  if (viaWasm) return viaWasm;
  const W = toFloat32(base, true);
  addLowRankJs(W, rows, cols, L, R, r, s);
  finish(W);
  return fromFloat32(W, outDtype, base.shape);
}

/**
 * DoRA: W' = (m / ‖W + sBA‖) · (W + sBA), the norm taken per output over the inputs (PEFT detaches it).
 * `rowsAreOutputs` is false for layouts stored transposed (Conv1D, Embedding), where outputs are columns.
 */
function applyDoraFactor(V: Float32Array, rows: number, cols: number, magnitude: Float32Array, rowsAreOutputs: boolean, module: string): Float32Array {
  const nOut = rowsAreOutputs ? rows : cols;
  if (magnitude.length !== nOut) throw new AdapterError(`${module}: lora_magnitude_vector has ${magnitude.length} values for ${nOut} outputs`);
  const sq = new Float64Array(nOut);
  for (let i = 0; i < rows; i++) {
    const o = i * cols;
    for (let j = 0; j < cols; j++) {
      const v = V[o + j]!;
      sq[rowsAreOutputs ? i : j]! += v * v;
    }
  }
  const norms = new Float32Array(nOut);
  for (let k = 0; k < nOut; k++) norms[k] = Math.sqrt(sq[k]!);
  const factor = doraFactor(magnitude, norms);
  for (let i = 0; i < rows; i++) {
    const o = i * cols;
    for (let j = 0; j < cols; j++) V[o + j] = V[o + j]! * factor[rowsAreOutputs ? i : j]!;
  }
  return norms;
}

/** f32(m / ‖·‖) per output: the same factor at merge and at unmerge, so dividing by it undoes the merge's product. */
function doraFactor(magnitude: Float32Array, norms: Float32Array): Float32Array {
  const factor = new Float32Array(norms.length);
  for (let k = 0; k < norms.length; k++) factor[k] = magnitude[k]! / norms[k]!;
  return factor;
}

/**
 * DoRA unmerge, as PEFT's `unmerge`: W = W' / (m / ‖W + sBA‖) − sBA, with the norms recorded when the module was merged
 * (they are of the base weight, which the merged weight no longer holds).
 */
function unmergeDora(base: Tensor, m: LoraModule, scaling: number, module: string, options: MergeOptions): Tensor {
  const norms = options.doraNorms;
  if (!norms) throw new UnsupportedFeatureError("use_dora", `${module}: DoRA unmerge needs the per-output weight norms recorded when the module was merged (PEFT keeps them in memory only)`);
  const { L, R, rows, cols, r } = factorsForStoredLayout(m);
  const rowsAreOutputs = m.kind === "linear" || isConvKind(m.kind);
  const magnitude = toFloat32(m.magnitude!);
  const nOut = rowsAreOutputs ? rows : cols;
  if (magnitude.length !== nOut || norms.length !== nOut) throw new AdapterError(`${module}: DoRA unmerge: ${magnitude.length} magnitudes and ${norms.length} recorded norms for ${nOut} outputs`);
  const factor = doraFactor(magnitude, norms);
  const W = toFloat32(base, true);
  for (let i = 0; i < rows; i++) {
    const o = i * cols;
    for (let j = 0; j < cols; j++) W[o + j] = W[o + j]! / factor[rowsAreOutputs ? i : j]!;
  }
  addLowRank(W, rows, cols, L, R, r, scaling, -1);
  if (options.safe) assertFinite(W, module);
  return fromFloat32(W, options.dtype ?? base.dtype, base.shape);
}

/** `lora_bias`: the base bias gains s·lora_B.bias on merge (PEFT), loses it on unmerge. */
export function mergeBias(baseBias: Tensor, bBias: Tensor, scaling: number, options: MergeOptions = {}): Tensor {
  const module = options.module ?? "module";
  if (numel(baseBias.shape) !== numel(bBias.shape)) {
    throw new ShapeMismatchError(`${module}.bias`, `base bias has shape [${baseBias.shape.join(", ")}] but lora_B.bias has [${bBias.shape.join(", ")}]`, bBias.shape, baseBias.shape);
  }
  const b = toFloat32(baseBias, true);
  const d = toFloat32(bBias);
  const fs = Math.fround(scaling);
  const sign = options.unmerge ? -1 : 1;
  for (let i = 0; i < b.length; i++) b[i] = b[i]! + sign * Math.fround(d[i]! * fs);
  if (options.safe) assertFinite(b, `${module}.bias`);
  return fromFloat32(b, options.dtype ?? baseBias.dtype, baseBias.shape);
}

export function assertFinite(x: Float32Array, module: string): void {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i]!)) throw new NonFiniteError(module);
}

// ---- loralib layers ----------------------------------------------------------------------------------

/**
 * loralib `MergedLinear`: B `[d·k, r]` for k enabled blocks of size d = out/G becomes an `[out, k·r]`
 * block-structured B whose g-th enabled block's rows hold B_g in columns [g·r, (g+1)·r); disabled blocks are
 * zero. Then ΔW = B'·A exactly equals loralib's `merge_AB` (the same products, the rest zeros).
 */
export function expandMergedLinearB(B: Float32Array, enableLora: readonly boolean[], outFeatures: number, r: number, module = "module"): Float32Array {
  const G = enableLora.length;
  const k = enableLora.filter(Boolean).length;
  if (G === 0 || k === 0) throw new AdapterError(`${module}: enable_lora must enable at least one block`);
  if (outFeatures % G !== 0) throw new ShapeMismatchError(module, `out_features ${outFeatures} is not divisible by len(enable_lora) = ${G}`);
  const d = outFeatures / G;
  if (B.length !== d * k * r) throw new ShapeMismatchError(module, `MergedLinear lora_B has ${B.length} values; enable_lora=[${enableLora.join(",")}] with r=${r} and out=${outFeatures} needs [${d * k}, ${r}]`, [d * k, r]);
  const out = new Float32Array(outFeatures * k * r);
  let g = 0;
  for (let block = 0; block < G; block++) {
    if (!enableLora[block]) continue;
    for (let row = 0; row < d; row++) {
      const src = (g * d + row) * r;
      const dst = (block * d + row) * k * r + g * r;
      for (let c = 0; c < r; c++) out[dst + c] = B[src + c]!;
    }
    g++;
  }
  return out;
}

/** ΔW of a loralib `MergedLinear` in the stored layout (`[in, out]` with fan_in_fan_out, else `[out, in]`). */
export function mergedLinearDelta(A: Tensor, B: Tensor, enableLora: readonly boolean[], outFeatures: number, scaling: number, fanInFanOut: boolean, module = "module"): Tensor {
  const k = enableLora.filter(Boolean).length;
  const rk = A.shape[0]!;
  if (k === 0 || rk % k !== 0) throw new ShapeMismatchError(module, `MergedLinear lora_A [${A.shape.join(", ")}] rows are not a multiple of ${k} enabled blocks`);
  const r = rk / k;
  const bExpanded = expandMergedLinearB(toFloat32(B), enableLora, outFeatures, r, module);
  const m: LoraModule = { kind: fanInFanOut ? "conv1d" : "linear", A, B: { dtype: "F32", shape: [outFeatures, rk], data: bExpanded } };
  return deltaWeight(m, scaling);
}

/** ΔW of a loralib `ConvLoRA` (Conv2d): s · reshape_rowmajor(B·A, weight shape). Only 2-D kernels are meaningful. */
export function loralibConvDelta(A: Tensor, B: Tensor, weightShape: readonly number[], scaling: number, module = "module"): Tensor {
  const [bRows, rB] = B.shape as [number, number];
  const [rA, aCols] = A.shape as [number, number];
  if (rA !== rB || bRows * aCols !== numel(weightShape)) {
    throw new ShapeMismatchError(module, `loralib conv lora_B [${B.shape.join(", ")}] · lora_A [${A.shape.join(", ")}] does not reshape to weight [${weightShape.join(", ")}]`, weightShape);
  }
  const out = new Float32Array(bRows * aCols);
  addLowRank(out, bRows, aCols, toFloat32(B), toFloat32(A), rA, scaling);
  return { dtype: "F32", shape: [...weightShape], data: out };
}
