/**
 * Argument checks of the bridge's public entry points. `Sidecar.call` (and so every model-handle method): what msgpack cannot carry, or would
 * carry as something else, is refused here with an ArgumentError naming the place inside the argument, instead
 * of a TypeError or `Too deep objects in depth 101` from the encoder, a tensor "of 0 bytes", or a document the
 * sidecar cannot read (msgpack `bin`/`ext` are refused there).
 */
import { ArgumentError } from "../../errors.js";
import { checkTensor } from "../../tensor/check-tensor.js";
import { describeValue, pathOf } from "../../tensor/describe-value.js";
import type { CallOptions, SidecarOptions } from "../options.js";
import type { TensorsIn } from "./codec.js";

/** Nesting depth allowed in params (the msgpack encoder's own limit is 100; schemas nest a few levels). */
export const MAX_PARAMS_DEPTH = 64;

export function checkMethod(method: unknown): asserts method is string {
  if (typeof method !== "string" || method.length === 0) throw new ArgumentError("method", `expected a method name (a non-empty string), got ${describeValue(method)}`);
}

/**
 * `params` is a plain JSON-like document: objects with string keys, arrays, strings, finite numbers, booleans,
 * null (undefined object members are left out, as the encoder does).
 */
export function checkParams(params: unknown, argument = "params"): void {
  if (!isPlainObject(params)) throw new ArgumentError(argument, `expected a plain object of parameters, got ${describeValue(params)}`);
  // Iterative, with the ancestors on a stack: a cycle is named as such, and no depth can overflow the JS stack.
  const stack: Array<{ value: unknown; path: string; depth: number; exit?: boolean }> = [{ value: params, path: argument, depth: 0 }];
  const ancestors = new Set<object>();
  while (stack.length > 0) {
    const item = stack.pop()!;
    const { value, path, depth } = item;
    if (item.exit) {
      ancestors.delete(value as object);
      continue;
    }
    if (value === null || typeof value === "string" || typeof value === "boolean") continue;
    if (typeof value === "number") {
      if (!Number.isFinite(value)) throw new ArgumentError(path, `expected a finite number, got ${value}`);
      continue;
    }
    if (typeof value === "bigint") throw new ArgumentError(path, `${describeValue(value)} cannot be sent: use a number (a safe integer), or a string`);
    if (typeof value === "undefined") throw new ArgumentError(path, "undefined cannot be sent inside an array: use null");
    if (typeof value === "function" || typeof value === "symbol") throw new ArgumentError(path, `${describeValue(value)} cannot be sent: params are data (objects, arrays, strings, numbers, booleans, null)`);
    const isArray = Array.isArray(value);
    if (!isArray && !isPlainObject(value)) {
      throw new ArgumentError(path, `${describeValue(value)} cannot be sent: params are plain data (objects, arrays, strings, numbers, booleans, null); tensors go in the tensors argument`);
    }
    if (ancestors.has(value)) throw new ArgumentError(path, "refers back to an object that contains it (a cycle): params must be a tree");
    if (depth >= MAX_PARAMS_DEPTH) throw new ArgumentError(path, `nested more than ${MAX_PARAMS_DEPTH} levels deep`);
    ancestors.add(value);
    stack.push({ value, path, depth, exit: true });
    if (isArray) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], path: pathOf(path, i), depth: depth + 1 });
    } else {
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined) stack.push({ value: v, path: pathOf(path, k), depth: depth + 1 });
      }
    }
  }
}

/** Undefined, an array of tensors, or a plain object of tensors by name. */
export function checkTensorsIn(tensors: unknown, argument = "tensors"): asserts tensors is TensorsIn | undefined {
  if (tensors === undefined) return;
  if (Array.isArray(tensors)) {
    tensors.forEach((t, i) => checkTensor(t, `${argument}[${i}]`));
    return;
  }
  if (!isPlainObject(tensors)) throw new ArgumentError(argument, `expected an array of tensors or an object of tensors by name, got ${describeValue(tensors)}`);
  for (const [k, t] of Object.entries(tensors)) checkTensor(t, pathOf(argument, k));
}

export function checkCallOptions(opts: unknown, argument = "opts"): asserts opts is CallOptions {
  if (opts === undefined) return;
  if (opts === null || typeof opts !== "object" || Array.isArray(opts)) throw new ArgumentError(argument, `expected an options object, got ${describeValue(opts)}`);
  const { timeoutMs, signal, onProgress } = opts as Record<string, unknown>;
  if (timeoutMs !== undefined && (typeof timeoutMs !== "number" || !(timeoutMs >= 0) || timeoutMs > 2 ** 31 - 1)) {
    throw new ArgumentError(`${argument}.timeoutMs`, `expected a number of milliseconds in [0, 2^31), got ${describeValue(timeoutMs)}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new ArgumentError(`${argument}.signal`, `expected an AbortSignal, got ${describeValue(signal)}`);
  if (onProgress !== undefined && typeof onProgress !== "function") throw new ArgumentError(`${argument}.onProgress`, `expected a function, got ${describeValue(onProgress)}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== "object") return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** A non-empty string (a path, a name). */
export function checkString(v: unknown, argument: string, what = "a non-empty string"): asserts v is string {
  if (typeof v !== "string" || v.length === 0) throw new ArgumentError(argument, `expected ${what}, got ${describeValue(v)}`);
}

const NUMBER_OPTIONS = ["startTimeoutMs", "timeoutMs", "cancelGraceMs", "closeGraceMs", "forceKillAfterMs", "maxMessageBytes", "maxQueuedBytes", "bulkThreshold", "sharedMemoryPoolBytes"] as const;

export function checkSidecarOptions(opts: unknown): asserts opts is SidecarOptions {
  if (opts === null || typeof opts !== "object" || Array.isArray(opts)) throw new ArgumentError("opts", `expected a SidecarOptions object, got ${describeValue(opts)}`);
  const o = opts as Record<string, unknown>;
  for (const k of ["python", "root"] as const) if (o[k] !== undefined) checkString(o[k], `opts.${k}`, "a path");
  if (o["transport"] !== undefined && o["transport"] !== "ipc" && o["transport"] !== "tcp") throw new ArgumentError("opts.transport", `expected "ipc" or "tcp", got ${describeValue(o["transport"])}`);
  for (const k of NUMBER_OPTIONS) {
    const v = o[k];
    if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) throw new ArgumentError(`opts.${k}`, `expected a finite number ≥ 0, got ${describeValue(v)}`);
  }
  const shm = o["sharedMemoryThreshold"];
  if (shm !== undefined && (typeof shm !== "number" || Number.isNaN(shm) || shm < 0)) throw new ArgumentError("opts.sharedMemoryThreshold", `expected a number of bytes ≥ 0 (Infinity: never), got ${describeValue(shm)}`);
  const env = o["env"];
  if (env !== undefined) {
    if (!isPlainObject(env)) throw new ArgumentError("opts.env", `expected an object of environment variables, got ${describeValue(env)}`);
    for (const [k, v] of Object.entries(env)) if (typeof v !== "string") throw new ArgumentError(pathOf("opts.env", k), `expected a string, got ${describeValue(v)}`);
  }
  for (const k of ["restartOnExit", "validateResults"] as const) {
    if (o[k] !== undefined && typeof o[k] !== "boolean") throw new ArgumentError(`opts.${k}`, `expected true or false, got ${describeValue(o[k])}`);
  }
  if (o["onStderr"] !== undefined && typeof o["onStderr"] !== "function") throw new ArgumentError("opts.onStderr", `expected a function, got ${describeValue(o["onStderr"])}`);
}
