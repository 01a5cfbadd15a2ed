/**
 * Checks of tensors and their parts handed in by callers: a wrong dtype name, a shape that is not a list of
 * sizes, or data that is not the dtype's typed array would otherwise surface as a TypeError deep inside (or as a
 * tensor of 0 bytes). Each failure is an ArgumentError naming the argument and what was expected.
 */
import { ArgumentError } from "../errors.js";
import { describeValue } from "./describe-value.js";
import { DTYPES, arrayTypeOf, isDType, itemsize, type DType } from "./dtype.js";
import type { Tensor } from "./tensor.js";

export function checkDType(dtype: unknown, argument: string): asserts dtype is DType {
  if (!isDType(dtype)) throw new ArgumentError(argument, `expected a dtype (${DTYPES.join(", ")}), got ${describeValue(dtype)}`);
}

/** A list of safe non-negative integers; returns its element count. */
export function checkShape(shape: unknown, argument: string): number {
  if (!Array.isArray(shape)) throw new ArgumentError(argument, `expected an array of dimension sizes, got ${describeValue(shape)}`);
  let n = 1;
  for (const [i, d] of shape.entries()) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new ArgumentError(`${argument}[${i}]`, `expected a dimension size (an integer ≥ 0), got ${describeValue(d)}`);
    }
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new ArgumentError(argument, `shape [${shape.join(", ")}] has more than 2^53 elements`);
  return n;
}

/** `t` is a Tensor whose data is its dtype's typed array holding exactly prod(shape) elements. */
export function checkTensor(t: unknown, argument: string): asserts t is Tensor {
  if (t === null || typeof t !== "object" || Array.isArray(t)) {
    throw new ArgumentError(argument, `expected a tensor {dtype, shape, data}, got ${describeValue(t)}`);
  }
  const { dtype, shape, data } = t as Record<string, unknown>;
  checkDType(dtype, `${argument}.dtype`);
  const n = checkShape(shape, `${argument}.shape`);
  const Ctor = arrayTypeOf(dtype);
  if (!(data instanceof Ctor)) {
    throw new ArgumentError(`${argument}.data`, `a ${dtype} tensor holds its values in a ${Ctor.name}, got ${describeValue(data)}`);
  }
  if (data.length !== n) {
    throw new ArgumentError(`${argument}.data`, `a ${dtype} tensor of shape [${(shape as number[]).join(", ")}] needs ${n} elements (${n * itemsize(dtype)} bytes), its ${Ctor.name} has ${data.length}`);
  }
}
