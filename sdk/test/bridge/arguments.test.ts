/**
 * Bad arguments to the bridge's public entry points (`Sidecar.start`, `Sidecar.call`, model-handle methods, the
 * tensor constructors) are ArgumentErrors naming the argument (the place inside it) and what was expected —
 * never a TypeError, `Too deep objects in depth 101` from the msgpack encoder, or a tensor "of 0 bytes". A real
 * sidecar answers the good calls around them, so a check that refused too much (or broke the call) fails here.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArgumentError, LoraportError } from "../../src/errors.js";
import { Sidecar } from "../../src/bridge/index.js";
import { MAX_PARAMS_DEPTH } from "../../src/bridge/internal/check-args.js";
import { fromBytes, tensor, type Tensor } from "../../src/tensor/index.js";
import { limit } from "../helpers/timeouts.js";

let sc: Sidecar;

beforeAll(async () => {
  sc = await Sidecar.start();
}, limit(120_000));
afterAll(async () => {
  await sc?.close();
});

/** Nested `depth` levels: {a: {a: … {a: 1}}}. */
function nested(depth: number): Record<string, unknown> {
  let v: Record<string, unknown> = { a: 1 };
  for (let i = 1; i < depth; i++) v = { a: v };
  return v;
}

async function refused(p: Promise<unknown>, argument: string | RegExp, message: RegExp): Promise<ArgumentError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ArgumentError);
  const e = err as ArgumentError;
  expect(e.code).toBe("E_ARGUMENT");
  if (typeof argument === "string") expect(e.argument).toBe(argument);
  else expect(e.argument).toMatch(argument);
  expect(e.message).toMatch(message);
  return e;
}

describe("Sidecar.call params", () => {
  it("refuses a BigInt, a function, a symbol, a Map, a Date and a typed array, naming where they are", async () => {
    await refused(sc.call("echo", { value: { n: 5n } }), "params.value.n", /BigInt 5n cannot be sent/);
    await refused(sc.call("echo", { value: [1, () => 2] }), "params.value[1]", /a function cannot be sent/);
    await refused(sc.call("echo", { value: Symbol("s") }), "params.value", /a symbol cannot be sent/);
    await refused(sc.call("echo", { value: new Map([[1, 2]]) }), "params.value", /a Map cannot be sent/);
    await refused(sc.call("echo", { value: new Date(0) }), "params.value", /a Date cannot be sent/);
    await refused(sc.call("echo", { value: new Float32Array(4) }), "params.value", /Float32Array of 4 cannot be sent.*tensors argument/);
    await refused(sc.call("echo", { value: { "odd key": NaN } }), 'params.value["odd key"]', /finite number, got NaN/);
    await refused(sc.call("echo", { value: [undefined] }), "params.value[0]", /use null/);
  });

  it("refuses a cycle as a cycle, and 10,000 levels of nesting without overflowing anything", async () => {
    const cyclic: Record<string, unknown> = { x: [1, 2] };
    (cyclic["x"] as unknown[]).push(cyclic);
    await refused(sc.call("echo", { value: cyclic }), "params.value.x[2]", /cycle/);
    const e = await refused(sc.call("echo", { value: nested(10_000) }), /^params\.value(\.a)+$/, new RegExp(`more than ${MAX_PARAMS_DEPTH} levels`));
    expect(e.argument.split(".").length).toBe(MAX_PARAMS_DEPTH + 1);
    // A shared (not cyclic) object is fine: it is sent twice.
    const shared = { k: 1 };
    const { result } = await sc.call("echo", { value: { p: shared, q: [shared] } });
    expect(result["value"]).toEqual({ p: { k: 1 }, q: [{ k: 1 }] });
  });

  it("sends the deepest params allowed, and the sidecar answers them unchanged", async () => {
    const deep = nested(MAX_PARAMS_DEPTH - 1); // params → value → MAX_PARAMS_DEPTH - 1 levels
    const { result } = await sc.call("echo", { value: deep, skipped: undefined });
    expect(result["value"]).toEqual(deep);
  });

  it("refuses params that are not a plain object, a bad method name and bad call options", async () => {
    await refused(sc.call("echo", null as unknown as object), "params", /plain object of parameters, got null/);
    await refused(sc.call("echo", [1] as unknown as object), "params", /got an array of 1/);
    await refused(sc.call("", {}), "method", /non-empty string/);
    await refused(sc.call(7 as unknown as string, {}), "method", /got 7/);
    await refused(sc.call("echo", {}, undefined, { timeoutMs: -1 }), "opts.timeoutMs", /milliseconds/);
    await refused(sc.call("echo", {}, undefined, { signal: {} as AbortSignal }), "opts.signal", /AbortSignal/);
    await refused(sc.call("echo", {}, undefined, { onProgress: 3 as unknown as () => void }), "opts.onProgress", /function/);
  });
});

describe("Sidecar.call tensors", () => {
  it("refuses tensors that are not tensors, naming which and why", async () => {
    await refused(sc.call("echo", {}, "x" as unknown as Tensor[]), "tensors", /array of tensors or an object of tensors by name, got the string "x"/);
    await refused(sc.call("echo", {}, [null as unknown as Tensor]), "tensors[0]", /expected a tensor \{dtype, shape, data\}, got null/);
    const f99 = { dtype: "F99", shape: [2], data: new Float32Array(2) } as unknown as Tensor;
    await refused(sc.call("echo", {}, { w: f99 }), "tensors.w.dtype", /expected a dtype \(F64, F32.*\), got the string "F99"/);
    const badShape = { dtype: "F32", shape: [2, -1], data: new Float32Array(2) } as unknown as Tensor;
    await refused(sc.call("echo", {}, [badShape]), "tensors[0].shape[1]", /dimension size.*got -1/);
    // Too short, and plain arrays (which used to pass as "its data has 0"): element counts and types named.
    const short = { dtype: "F32", shape: [4], data: new Float32Array(2) } as Tensor;
    await refused(sc.call("echo", {}, [short]), "tensors[0].data", /needs 4 elements \(16 bytes\), its Float32Array has 2/);
    const plain = { dtype: "F32", shape: [2], data: [1, 2] } as unknown as Tensor;
    await refused(sc.call("echo", {}, [plain]), "tensors[0].data", /holds its values in a Float32Array, got an array of 2/);
    const wrongType = { dtype: "I64", shape: [2], data: new Float64Array(2) } as unknown as Tensor;
    await refused(sc.call("echo", {}, { ids: wrongType }), "tensors.ids.data", /BigInt64Array, got a Float64Array of 2/);
  });

  it("still moves good tensors (by name and in order) after the refusals", async () => {
    const t = tensor("F32", [2, 2], new Float32Array([1, 2, 3, -4]));
    const { named, result } = await sc.call("echo", {}, { t });
    expect(result["nbytes"]).toBe(16);
    expect([...(named["t"]!.data as Float32Array)]).toEqual([1, 2, 3, -4]);
    expect(sc.running).toBe(true);
  });
});

describe("Sidecar.start and model handles", () => {
  it("refuses bad options before spawning anything", async () => {
    await refused(Sidecar.start({ transport: "udp" as "ipc" }), "opts.transport", /"ipc" or "tcp", got the string "udp"/);
    await refused(Sidecar.start({ timeoutMs: Number.NaN }), "opts.timeoutMs", /finite number/);
    await refused(Sidecar.start({ env: { A: 1 as unknown as string } }), "opts.env.A", /expected a string, got 1/);
    await refused(Sidecar.start(null as unknown as object), "opts", /SidecarOptions object, got null/);
  });

  it("checks a handle's forward inputs and params by their own names", async () => {
    const model = await sc.loadModel({ source: { kind: "builtin", family: "gpt2" } });
    try {
      await refused(model.forward({ input_ids: "x" as unknown as Tensor }), "inputs.input_ids", /expected a tensor/);
      await refused(model.forward({}, { outputs: [1n] } as unknown as object), "params.outputs[0]", /BigInt/);
      await refused(model.saveAdapter(undefined as unknown as string), "path", /output folder, got undefined/);
      await refused(sc.exportOnnx(model, undefined as unknown as string), "out", /output folder/);
      const ids = tensor("I64", [1, 3], new BigInt64Array([1n, 2n, 3n]));
      const out = await model.forward({ input_ids: ids });
      expect(out["logits"]!.shape.slice(0, 2)).toEqual([1, 3]);
    } finally {
      await model.release();
    }
  }, limit(120_000));
});

describe("tensor constructors", () => {
  it("throw loraport errors (never TypeErrors) for a bad dtype, shape or data", () => {
    const cases: Array<[() => unknown, string, RegExp]> = [
      [() => tensor("F99" as "F32", [2]), "dtype", /got the string "F99"/],
      [() => tensor("F32", 3 as unknown as number[]), "shape", /array of dimension sizes, got 3/],
      [() => tensor("F32", [1.5]), "shape[0]", /got 1.5/],
      [() => tensor("F32", [2], "ab" as unknown as Float32Array), "data", /Float32Array, got the string "ab"/],
      [() => tensor("F32", [2], [1, 2] as unknown as Float32Array), "data", /Float32Array, got an array of 2/],
      [() => tensor("F32", [3], new Float32Array(2)), "data", /needs 3 elements, got 2/],
      [() => fromBytes("X" as "U8", [1], new Uint8Array(1)), "dtype", /expected a dtype/],
    ];
    for (const [fn, argument, message] of cases) {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(err, argument).toBeInstanceOf(ArgumentError);
      expect((err as ArgumentError).argument).toBe(argument);
      expect((err as Error).message).toMatch(message);
    }
    expect(() => fromBytes("F32", [2], "ab" as unknown as Uint8Array)).toThrow(LoraportError);
    expect(tensor("F32", [2]).data).toEqual(new Float32Array(2));
  });
});
