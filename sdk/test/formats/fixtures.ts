/** Deterministic tensors for format tests: every dtype, empty tensors, scalars, many names. */
import { createHash } from "node:crypto";
import { DTYPES, itemsize, type DType } from "../../src/tensor/dtype.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { bytesOf, fromBytes, numel } from "../../src/tensor/tensor-impl.js";

/** A tensor of pseudo-random bytes (BOOL kept to 0/1 so every reader accepts it). */
export function randomTensor(dtype: DType, shape: readonly number[], seed: number): Tensor {
  const bytes = new Uint8Array(numel(shape) * itemsize(dtype));
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    bytes[i] = dtype === "BOOL" ? x & 1 : x & 0xff;
  }
  return fromBytes(dtype, shape, bytes);
}

/** One tensor per dtype plus empty, scalar and out-of-order names. */
export function mixedStateDict(): Map<string, Tensor> {
  const sd = new Map<string, Tensor>();
  DTYPES.forEach((dtype, i) => sd.set(`t.${dtype.toLowerCase()}`, randomTensor(dtype, [3, 5], i + 1)));
  sd.set("layers.10.w", randomTensor("F32", [2, 2], 101));
  sd.set("layers.2.w", randomTensor("F32", [2, 2], 102));
  sd.set("empty.1d", randomTensor("F32", [0], 103));
  sd.set("empty.2d", randomTensor("F16", [4, 0], 104));
  sd.set("scalar", randomTensor("F64", [], 105));
  sd.set("scalar.bool", randomTensor("BOOL", [], 106));
  sd.set("ünïcode.name", randomTensor("BF16", [7], 107));
  return sd;
}

export function sha256(t: Tensor): string {
  return createHash("sha256").update(bytesOf(t)).digest("hex");
}
