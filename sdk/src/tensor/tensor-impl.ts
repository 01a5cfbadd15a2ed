import { ArgumentError, LoraportError } from "../errors.js";
import { checkDType, checkShape } from "./check-tensor.js";
import { describeValue } from "./describe-value.js";
import { arrayTypeOf, isFloat, itemsize, type DType, type TensorData } from "./dtype.js";
import { bf16ToF32, f16ToF32, f32ToBF16, f32ToF16 } from "./half.js";
import type { Tensor } from "./tensor.js";

/** Element count of a shape. Throws past 2^53 rather than losing precision. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new LoraportError("E_SHAPE", `bad dimension ${d} in shape [${shape.join(", ")}]`);
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new LoraportError("E_SHAPE", `shape [${shape.join(", ")}] has more than 2^53 elements`);
  return n;
}

export function byteLength(t: Tensor): number {
  return t.data.byteLength;
}

/** Make a tensor, checking that the data length matches the shape and the array type matches the dtype. */
export function tensor(dtype: DType, shape: readonly number[], data?: TensorData): Tensor {
  // Callers from plain JS (or `as` casts) reach here with anything: typed errors, not TypeErrors from inside.
  checkDType(dtype, "dtype");
  const n = checkShape(shape, "shape");
  const Ctor = arrayTypeOf(dtype);
  const d = data ?? new Ctor(n);
  if (!(d instanceof Ctor)) throw new ArgumentError("data", `a ${dtype} tensor needs a ${Ctor.name}, got ${describeValue(d)}`);
  if (d.length !== n) throw new ArgumentError("data", `a ${dtype} tensor of shape [${shape.join(", ")}] needs ${n} elements, got ${d.length}`);
  return { dtype, shape: [...shape], data: d };
}

/** View raw little-endian bytes as a tensor; copies only when the bytes are not aligned for the dtype. */
export function fromBytes(dtype: DType, shape: readonly number[], bytes: Uint8Array): Tensor {
  checkDType(dtype, "dtype");
  const n = checkShape(shape, "shape");
  if (!(bytes instanceof Uint8Array)) throw new LoraportError("E_SHAPE", `bytes: expected a Uint8Array, got ${describeValue(bytes)}`);
  const size = itemsize(dtype);
  if (bytes.byteLength !== n * size) {
    throw new LoraportError("E_SHAPE", `${dtype} [${shape.join(", ")}] needs ${n * size} bytes, got ${bytes.byteLength}`);
  }
  const Ctor = arrayTypeOf(dtype);
  if (bytes.byteOffset % size === 0) return { dtype, shape: [...shape], data: new Ctor(bytes.buffer, bytes.byteOffset, n) };
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return { dtype, shape: [...shape], data: new Ctor(copy.buffer, 0, n) };
}

/** The tensor's bytes, without copying. */
export function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Values as F32 (a copy, or the same array for F32 input when `copy` is false). */
export function toFloat32(t: Tensor, copy = false): Float32Array {
  switch (t.dtype) {
    case "F32":
      return copy ? new Float32Array(t.data as Float32Array) : (t.data as Float32Array);
    case "F16":
      return f16ToF32(t.data as Uint16Array);
    case "BF16":
      return bf16ToF32(t.data as Uint16Array);
    case "F64":
      return Float32Array.from(t.data as Float64Array);
    default:
      if (isFloat(t.dtype)) break;
      if (t.data instanceof BigInt64Array || t.data instanceof BigUint64Array) return Float32Array.from(t.data, Number);
      return Float32Array.from(t.data as ArrayLike<number>);
  }
  throw new LoraportError("E_DTYPE", `cannot convert ${t.dtype} to F32`);
}

/** Cast F32 values to a floating dtype (F32, F16, BF16 or F64). */
export function fromFloat32(values: Float32Array, dtype: DType, shape: readonly number[]): Tensor {
  switch (dtype) {
    case "F32":
      return tensor("F32", shape, values);
    case "F16":
      return tensor("F16", shape, f32ToF16(values));
    case "BF16":
      return tensor("BF16", shape, f32ToBF16(values));
    case "F64":
      return tensor("F64", shape, Float64Array.from(values));
    default:
      throw new LoraportError("E_DTYPE", `cannot cast F32 to ${dtype}`);
  }
}

/** Same dtype, new data: the values of `t` cast through F32 to `dtype`. */
export function castTo(t: Tensor, dtype: DType): Tensor {
  if (t.dtype === dtype) return t;
  return fromFloat32(toFloat32(t), dtype, t.shape);
}
