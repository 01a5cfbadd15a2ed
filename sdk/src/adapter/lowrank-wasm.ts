/**
 * The merge's inner kernel, W[i, :] += s · Σ_k L[i, k] · R[k, :], as a tiny hand-assembled WebAssembly SIMD
 * module (f32x4). Plain JS runs this at ~0.5–1 GMAC/s; SIMD makes the merge bound by memory, not arithmetic.
 * Rounding as PEFT's CPU path: the product B·A is summed in F32 in k order, then times s, then added to W.
 * Needs `cols % 4 === 0`; callers fall back to the JS loop otherwise.
 */

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
  const type = section(1, vec([[0x60, ...vec([[0x7f], [0x7f], [0x7f], [0x7f], [0x7f], [0x7f], [0x7d]]), 0x00]]));
  const imports = section(2, vec([[...name("env"), ...name("mem"), 0x02, 0x00, 0x01]]));
  const funcs = section(3, vec([[0x00], [0x00]]));
  const exports = section(7, vec([[...name("k1"), 0x00, 0x00], [...name("k4"), 0x00, 0x01]]));
  const fn = (U: number): number[] => {
    const f = [...vec([[7, 0x7f], [2 + U, 0x7b]]), ...kernelBody(U)];
    return [...leb(f.length), ...f];
  };
  const code = section(10, vec([fn(1), fn(4)]));
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

interface Kernel {
  mem: WasmMemory;
  k1: KernelFn;
  k4: KernelFn;
}

let kernel: Kernel | null | undefined;

function getKernel(): Kernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const wa = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    if (!wa) throw new Error("no WebAssembly");
    const mem = new wa.Memory({ initial: 1 });
    const inst = new wa.Instance(new wa.Module(moduleBytes()), { env: { mem } });
    kernel = { mem, k1: inst.exports["k1"] as KernelFn, k4: inst.exports["k4"] as KernelFn };
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
  const have = kn.mem.buffer.byteLength;
  if (have < need) kn.mem.grow(Math.ceil((need - have) / 65536));
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
