/**
 * Turning a pickled tensor description (storage, offset, size, stride) into a dense C-contiguous Tensor.
 * Bounds are checked against the storage first, so a hostile size/stride cannot read outside it. A contiguous
 * view shares its storage's bytes, as torch.load shares storages (many views of one storage cost nothing more);
 * a strided one (transposed, expanded with stride 0, overlapping) must be copied into a dense buffer, and that
 * copy is charged to the file's budget before it is allocated.
 */
import { FormatError } from "../../errors.js";
import { itemsize } from "../../tensor/dtype.js";
import type { Tensor } from "../../tensor/tensor.js";
import { fromBytes, numel } from "../../tensor/tensor-impl.js";
import { checkAllocatable } from "../atomic-file.js";
import { ReadBudget } from "../limits.js";
import type { PendingTensor } from "./allowlist.js";

/** `storage` holds the storage's bytes (8-byte aligned, offset 0). */
export function materialise(file: string, where: string, p: PendingTensor, storage: Uint8Array, budget: ReadBudget = new ReadBudget(file, storage.byteLength)): Tensor {
  const es = itemsize(p.dtype);
  const storageElems = Math.floor(storage.byteLength / es);
  let n: number;
  try {
    n = numel(p.size);
  } catch {
    throw new FormatError(file, `${where}: tensor size [${p.size.join(", ")}] has too many elements`);
  }
  if (n === 0) return fromBytes(p.dtype, p.size, new Uint8Array(0));
  // An expanded view (stride 0) can describe far more elements than its storage holds.
  checkAllocatable(file, `${where}: tensor [${p.size.join(", ")}] (${n * es} bytes)`, n * es);
  let last = p.offset;
  for (let d = 0; d < p.size.length; d++) last += (p.size[d]! - 1) * p.stride[d]!;
  if (!Number.isSafeInteger(last) || last >= storageElems) {
    throw new FormatError(file, `${where}: view (offset ${p.offset}, size [${p.size.join(", ")}], stride [${p.stride.join(", ")}]) reaches element ${last} of a storage with ${storageElems}`);
  }
  if (isContiguous(p.size, p.stride)) return fromBytes(p.dtype, p.size, storage.subarray(p.offset * es, (p.offset + n) * es));
  budget.charge(n * es, `${where}: a dense copy of a strided view [${p.size.join(", ")}] (stride [${p.stride.join(", ")}])`);
  return fromBytes(p.dtype, p.size, gather(storage, es, p.offset, p.size, p.stride, n));
}

function isContiguous(size: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    if (size[d] !== 1 && stride[d] !== expected) return false;
    expected *= size[d]!;
  }
  return true;
}

/** Copy a strided view into a new dense buffer, element by element in C order. */
function gather(storage: Uint8Array, es: number, offset: number, size: readonly number[], stride: readonly number[], n: number): Uint8Array {
  const out = new Uint8Array(n * es);
  // Move elements as 1/2/4-byte words (8-byte elements as two 4-byte words): bit patterns are copied untouched.
  const words = es === 8 ? 2 : 1;
  const w = es === 8 ? 4 : es;
  const Arr = w === 1 ? Uint8Array : w === 2 ? Uint16Array : Uint32Array;
  const src = new Arr(storage.buffer as ArrayBuffer, storage.byteOffset, Math.floor(storage.byteLength / w));
  const dst = new Arr(out.buffer, 0, (n * es) / w);
  const nd = size.length;
  const inner = size[nd - 1]!;
  const innerStride = stride[nd - 1]! * words;
  const idx = new Array<number>(Math.max(0, nd - 1)).fill(0);
  let base = offset;
  let o = 0;
  for (;;) {
    let s = base * words;
    if (words === 1) {
      for (let i = 0; i < inner; i++, s += innerStride) dst[o++] = src[s]!;
    } else {
      for (let i = 0; i < inner; i++, s += innerStride) {
        dst[o++] = src[s]!;
        dst[o++] = src[s + 1]!;
      }
    }
    // Odometer over the outer dimensions.
    let d = nd - 2;
    for (; d >= 0; d--) {
      idx[d]!++;
      base += stride[d]!;
      if (idx[d]! < size[d]!) break;
      base -= stride[d]! * size[d]!;
      idx[d] = 0;
    }
    if (d < 0) return out;
  }
}
