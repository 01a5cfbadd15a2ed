/**
 * The merge's inner kernel, W[i, :] += s · Σ_k L[i, k] · R[k, :], as a tiny hand-assembled WebAssembly SIMD
 * module (f32x4). Plain JS runs this at ~0.5–1 GMAC/s; SIMD makes the merge bound by memory, not arithmetic.
 * Rounding as PEFT's CPU path: the product B·A is summed in F32 in k order, then times s, then added to W.
 * Needs `cols % 4 === 0`; callers fall back to the JS loop otherwise.
 */
import { bf16ToF32, f16ToF32, f32ToBF16, f32ToF16, type DType, type Tensor } from "../tensor/index.js";

// Opcodes used below (WebAssembly core + SIMD).
const BLOCK = 0x02, LOOP = 0x03, END = 0x0b, BR = 0x0c, BR_IF = 0x0d;
const GET = 0x20, SET = 0x21;
const I32_CONST = 0x41, I32_ADD = 0x6a, I32_MUL = 0x6c, I32_SHL = 0x74, I32_GE_U = 0x4f;
const F32_LOAD = [0x2a, 0x02, 0x00]; // align 2^2, offset 0
const SIMD = 0xfd;
const v128Load = (offset: number) => [SIMD, 0x00, 0x00, ...leb(offset)]; // align hint 1: any address
const v128Store = (offset: number) => [SIMD, 0x0b, 0x00, ...leb(offset)];
const V128_ZERO = [SIMD, 0x0c, ...new Array<number>(16).fill(0)];
const F32X4_SPLAT = [SIMD, 0x13];
const F32X4_ADD = [SIMD, 0xe4, 0x01];
const F32X4_MUL = [SIMD, 0xe6, 0x01];
const EMPTY = 0x40;

// Params: W rows cols L R r s; i32 locals: i j k lp rp wp cb; v128 locals: c sv acc0..acc(U-1).
const [W, ROWS, COLS, L, R, RANK, S, I, J, K, LP, RP, WP, CB, C, SV, ACC0] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

/** Kernel body processing U vectors (4·U columns) per step; needs cols % (4·U) === 0. */
function kernelBody(U: number): number[] {
  const us = [...Array(U).keys()];
  return [
    GET, S, ...F32X4_SPLAT, SET, SV,
    GET, COLS, I32_CONST, 2, I32_SHL, SET, CB,
    I32_CONST, 0, SET, I,
    BLOCK, EMPTY, LOOP, EMPTY,
    GET, I, GET, ROWS, I32_GE_U, BR_IF, 1,
    I32_CONST, 0, SET, J,
    BLOCK, EMPTY, LOOP, EMPTY,
    GET, J, GET, CB, I32_GE_U, BR_IF, 1,
    ...us.flatMap((u) => [...V128_ZERO, SET, ACC0 + u]),
    GET, L, GET, I, GET, RANK, I32_MUL, I32_CONST, 2, I32_SHL, I32_ADD, SET, LP,
    GET, R, GET, J, I32_ADD, SET, RP,
    I32_CONST, 0, SET, K,
    BLOCK, EMPTY, LOOP, EMPTY,
    GET, K, GET, RANK, I32_GE_U, BR_IF, 1,
    GET, LP, ...F32_LOAD, ...F32X4_SPLAT, SET, C,
    ...us.flatMap((u) => [GET, ACC0 + u, GET, C, GET, RP, ...v128Load(16 * u), ...F32X4_MUL, ...F32X4_ADD, SET, ACC0 + u]),
    GET, LP, I32_CONST, 4, I32_ADD, SET, LP,
    GET, RP, GET, CB, I32_ADD, SET, RP,
    GET, K, I32_CONST, 1, I32_ADD, SET, K,
    BR, 0, END, END,
    GET, W, GET, I, GET, CB, I32_MUL, I32_ADD, GET, J, I32_ADD, SET, WP,
    ...us.flatMap((u) => [GET, WP, GET, WP, ...v128Load(16 * u), GET, ACC0 + u, GET, SV, ...F32X4_MUL, ...F32X4_ADD, ...v128Store(16 * u)]),
    GET, J, ...i32Const(16 * U), I32_ADD, SET, J,
    BR, 0, END, END,
    GET, I, I32_CONST, 1, I32_ADD, SET, I,
    BR, 0, END, END,
    END,
  ];
}

const I32X4_SPLAT = [SIMD, 0x11];
const I32X4_SHL = [SIMD, 0xab, 0x01];
const I32X4_SHR_U = [SIMD, 0xad, 0x01];
const I32X4_ADD = [SIMD, 0xae, 0x01];
const I32X4_EXTEND_LOW_I16X8_U = [SIMD, 0xa9, 0x01];
const I32X4_EXTEND_HIGH_I16X8_U = [SIMD, 0xaa, 0x01];
const I16X8_NARROW_I32X4_U = [SIMD, 0x86, 0x01];
const V128_AND = [SIMD, 0x4e];
const V128_OR = [SIMD, 0x50];
const V128_BITSELECT = [SIMD, 0x52];
const F32X4_NE = [SIMD, 0x42];

// Conversion kernels: params src dst n (i32; n a multiple of 8, pointers in bytes).
const [SRC, DST, N, CI, CP] = [0, 1, 2, 3, 4];

/** BF16 bits (u16) → F32: each value's bits become the high half. 8 values per step. */
function bf16ToF32Body(): number[] {
  const X = 5;
  return [
    I32_CONST, 0, SET, CI,
    BLOCK, EMPTY, LOOP, EMPTY,
    GET, CI, GET, N, I32_GE_U, BR_IF, 1,
    GET, SRC, GET, CI, I32_CONST, 1, I32_SHL, I32_ADD, ...v128Load(0), SET, X,
    GET, DST, GET, CI, I32_CONST, 2, I32_SHL, I32_ADD, SET, CP,
    GET, CP, GET, X, ...I32X4_EXTEND_LOW_I16X8_U, I32_CONST, 16, ...I32X4_SHL, ...v128Store(0),
    GET, CP, GET, X, ...I32X4_EXTEND_HIGH_I16X8_U, I32_CONST, 16, ...I32X4_SHL, ...v128Store(16),
    GET, CI, I32_CONST, 8, I32_ADD, SET, CI,
    BR, 0, END, END,
    END,
  ];
}

/** F32 → BF16 bits, round to nearest even, NaN kept quiet (hi | 0x40), as `f32ToBF16`. 8 values per step. */
function f32ToBF16Body(): number[] {
  const [A, B, HALF, ONE, QUIET] = [5, 6, 7, 8, 9];
  const round = (x: number): number[] => [
    // bitselect(quiet NaN, rounded, x != x)
    GET, x, I32_CONST, 16, ...I32X4_SHR_U, GET, QUIET, ...V128_OR,
    GET, x, GET, HALF, ...I32X4_ADD, GET, x, I32_CONST, 16, ...I32X4_SHR_U, GET, ONE, ...V128_AND, ...I32X4_ADD, I32_CONST, 16, ...I32X4_SHR_U,
    GET, x, GET, x, ...F32X4_NE,
    ...V128_BITSELECT,
  ];
  return [
    ...i32Const(0x7fff), ...I32X4_SPLAT, SET, HALF,
    I32_CONST, 1, ...I32X4_SPLAT, SET, ONE,
    ...i32Const(0x40), ...I32X4_SPLAT, SET, QUIET,
    I32_CONST, 0, SET, CI,
    BLOCK, EMPTY, LOOP, EMPTY,
    GET, CI, GET, N, I32_GE_U, BR_IF, 1,
    GET, SRC, GET, CI, I32_CONST, 2, I32_SHL, I32_ADD, SET, CP,
    GET, CP, ...v128Load(0), SET, A,
    GET, CP, ...v128Load(16), SET, B,
    GET, DST, GET, CI, I32_CONST, 1, I32_SHL, I32_ADD,
    ...round(A), ...round(B), ...I16X8_NARROW_I32X4_U,
    ...v128Store(0),
    GET, CI, I32_CONST, 8, I32_ADD, SET, CI,
    BR, 0, END, END,
    END,
  ];
}

/** Signed LEB128 i32.const. */
function i32Const(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) {
      out.push(b);
      return [I32_CONST, ...out];
    }
    out.push(b | 0x80);
  }
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
const vec = (items: number[][]): number[] => [...leb(items.length), ...items.flat()];
const section = (id: number, bytes: number[]): number[] => [id, ...leb(bytes.length), ...bytes];
const name = (s: string): number[] => [...leb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

function moduleBytes(): Uint8Array {
  const type = section(1, vec([[0x60, ...vec([[0x7f], [0x7f], [0x7f], [0x7f], [0x7f], [0x7f], [0x7d]]), 0x00], [0x60, ...vec([[0x7f], [0x7f], [0x7f]]), 0x00]]));
  const imports = section(2, vec([[...name("env"), ...name("mem"), 0x02, 0x00, 0x01]]));
  const funcs = section(3, vec([[0x00], [0x00], [0x01], [0x01]]));
  const exports = section(7, vec([[...name("k1"), 0x00, 0x00], [...name("k4"), 0x00, 0x01], [...name("b2f"), 0x00, 0x02], [...name("f2b"), 0x00, 0x03]]));
  const fn = (U: number): number[] => {
    const f = [...vec([[7, 0x7f], [2 + U, 0x7b]]), ...kernelBody(U)];
    return [...leb(f.length), ...f];
  };
  const conv = (locals: number[][], body: number[]): number[] => {
    const f = [...vec(locals), ...body];
    return [...leb(f.length), ...f];
  };
  const code = section(10, vec([fn(1), fn(4), conv([[2, 0x7f], [1, 0x7b]], bf16ToF32Body()), conv([[2, 0x7f], [5, 0x7b]], f32ToBF16Body())]));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...type, ...imports, ...funcs, ...exports, ...code]);
}

type KernelFn = (W: number, rows: number, cols: number, L: number, R: number, r: number, s: number) => void;
/** The slice of the WebAssembly API used here (the project's TS lib has no DOM/WebAssembly typings). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Memory: new (d: { initial: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}

type ConvFn = (src: number, dst: number, n: number) => void;
interface Kernel {
  mem: WasmMemory;
  k1: KernelFn;
  k4: KernelFn;
  b2f: ConvFn;
  f2b: ConvFn;
}

let kernel: Kernel | null | undefined;

function getKernel(): Kernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const wa = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    if (!wa) throw new Error("no WebAssembly");
    const mem = new wa.Memory({ initial: 1 });
    const inst = new wa.Instance(new wa.Module(moduleBytes()), { env: { mem } });
    const e = inst.exports;
    kernel = { mem, k1: e["k1"] as KernelFn, k4: e["k4"] as KernelFn, b2f: e["b2f"] as ConvFn, f2b: e["f2b"] as ConvFn };
  } catch {
    kernel = null; // no SIMD: the JS loop does the work
  }
  return kernel;
}

/** Largest W this path takes (wasm32 memory is 4 GiB; keep well below). */
const MAX_BYTES = 2 ** 31;

/**
 * W += s·L·R with the SIMD kernel; returns false (W untouched) when the kernel is unavailable or the shape
 * does not suit it, so the caller runs the JS loop.
 */
export function addLowRankWasm(Wm: Float32Array, rows: number, cols: number, Lm: Float32Array, Rm: Float32Array, r: number, scaling: number): boolean {
  if (cols % 4 !== 0 || r === 0) return false;
  const need = 4 * (rows * cols + rows * r + r * cols) + 64;
  if (need > MAX_BYTES) return false;
  const kn = getKernel();
  if (!kn) return false;
  ensureMemory(kn, need);
  const f = new Float32Array(kn.mem.buffer);
  const wOff = 0;
  const lOff = rows * cols;
  const rOff = lOff + rows * r;
  f.set(Wm, wOff);
  f.set(Lm, lOff);
  f.set(Rm, rOff);
  (cols % 16 === 0 ? kn.k4 : kn.k1)(wOff * 4, rows, cols, lOff * 4, rOff * 4, r, scaling);
  Wm.set(new Float32Array(kn.mem.buffer, 0, rows * cols));
  return true;
}

/**
 * A whole merge in wasm memory: the base weight (F32, BF16 or F16) is loaded as F32 (BF16 widened by SIMD),
 * W += s·L·R runs in place, `finish` sees the F32 result (DoRA rescaling, finiteness checks), and the result is
 * returned in `outDtype` (BF16 rounded by SIMD, to nearest even). Returns null when the kernel is unavailable
 * or the shape/dtypes do not suit it; the caller then takes the JS path.
 */
export function mergeLowRankWasm(
  base: Tensor,
  rows: number,
  cols: number,
  Lm: Float32Array,
  Rm: Float32Array,
  r: number,
  scaling: number,
  outDtype: DType,
  finish?: (W: Float32Array) => void,
  /** Where the result's bytes go (a reusable buffer of at least `bytes`); default a fresh array. */
  output?: (bytes: number) => ArrayBuffer,
): Tensor | null {
  const n = rows * cols;
  if (cols % 4 !== 0 || r === 0 || n !== base.data.length) return null;
  if (!SUPPORTED.has(base.dtype) || !SUPPORTED.has(outDtype)) return null;
  const align = (x: number) => Math.ceil(x / 16) * 16;
  const lByte = align(4 * n);
  const rByte = align(lByte + 4 * rows * r);
  const sByte = align(rByte + 4 * r * cols);
  const need = align(sByte + 2 * n) + 64;
  if (need > MAX_BYTES) return null;
  const kn = getKernel();
  if (!kn) return null;
  ensureMemory(kn, need);
  const buf = kn.mem.buffer;
  const W = new Float32Array(buf, 0, n);
  const scratch = new Uint16Array(buf, sByte, n);
  const n8 = n - (n % 8);
  switch (base.dtype) {
    case "F32":
      W.set(base.data as Float32Array);
      break;
    case "BF16":
      scratch.set(base.data as Uint16Array);
      kn.b2f(sByte, 0, n8);
      if (n8 < n) bf16ToF32(scratch.subarray(n8), W.subarray(n8));
      break;
    default:
      f16ToF32(base.data as Uint16Array, W);
  }
  new Float32Array(buf, lByte, rows * r).set(Lm);
  new Float32Array(buf, rByte, r * cols).set(Rm);
  (cols % 16 === 0 ? kn.k4 : kn.k1)(0, rows, cols, lByte, rByte, r, scaling);
  finish?.(W);
  switch (outDtype) {
    case "F32":
      return { dtype: "F32", shape: base.shape, data: output ? copyInto(new Float32Array(output(4 * n), 0, n), W) : W.slice() };
    case "BF16":
      kn.f2b(0, sByte, n8);
      if (n8 < n) f32ToBF16(W.subarray(n8), scratch.subarray(n8));
      return { dtype: "BF16", shape: base.shape, data: output ? copyInto(new Uint16Array(output(2 * n), 0, n), scratch) : scratch.slice() };
    default:
      return { dtype: "F16", shape: base.shape, data: f32ToF16(W) };
  }
}

function copyInto<T extends Float32Array | Uint16Array>(dst: T, src: T): T {
  dst.set(src);
  return dst;
}

const SUPPORTED: ReadonlySet<DType> = new Set(["F32", "BF16", "F16"]);

/** Grow the kernel's memory (64 KiB pages) to hold at least `bytes`. */
function ensureMemory(kn: Kernel, bytes: number): void {
  const have = kn.mem.buffer.byteLength;
  if (have < bytes) kn.mem.grow(Math.ceil((bytes - have) / 65536));
}

/**
 * One SIMD conversion of `src` (source elements of `srcSize` bytes) into a fresh array of `Out` elements: the
 * kernel handles whole groups of 8, `tail` the rest.
 */
function convertWithKernel<In extends Float32Array | Uint16Array, Out extends Float32Array | Uint16Array>(
  kn: Kernel, src: In, run: ConvFn, Out: { new (buf: ArrayBuffer, off: number, len: number): Out; BYTES_PER_ELEMENT: number },
  tail: (src: In, dst: Out) => void,
): Out {
  const n = src.length - (src.length % 8);
  const dOff = Math.ceil(src.byteLength / 16) * 16;
  ensureMemory(kn, dOff + Out.BYTES_PER_ELEMENT * src.length);
  new Uint8Array(kn.mem.buffer, 0, src.byteLength).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
  run(0, dOff, n);
  const out = new Out(kn.mem.buffer, dOff, src.length).slice() as Out;
  if (n < src.length) tail(src.subarray(n) as In, out.subarray(n) as Out);
  return out;
}

/** Test hook: the SIMD BF16 conversions on their own (null without the kernel). */
export function simdBf16(): { toF32(src: Uint16Array): Float32Array; fromF32(src: Float32Array): Uint16Array } | null {
  const kn = getKernel();
  if (!kn) return null;
  return {
    toF32: (src) => convertWithKernel(kn, src, kn.b2f, Float32Array, bf16ToF32),
    fromF32: (src) => convertWithKernel(kn, src, kn.f2b, Uint16Array, f32ToBF16),
  };
}
