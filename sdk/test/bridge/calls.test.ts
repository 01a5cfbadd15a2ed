/**
 * A real sidecar (real Python, ZeroMQ, torch): tensors both ways, Python exceptions, deadlines, cancellation,
 * ping while computing, progress, 1,000 concurrent calls, malformed and oversized messages.
 */
import { Dealer } from "zeromq";
import { decode, encode } from "@msgpack/msgpack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CancelledError, ProtocolError, RemoteError, TimeoutError } from "../../src/errors.js";
import { Sidecar } from "../../src/bridge/index.js";
import { tensor } from "../../src/tensor/index.js";
import type { ProgressEvent } from "../../src/progress.js";

const MAX = 4 * 2 ** 20;
let sc: Sidecar;

beforeAll(async () => {
  sc = await Sidecar.start({ validateResults: true, maxMessageBytes: MAX, cancelGraceMs: 5000 });
});
afterAll(async () => {
  await sc?.close();
});

describe("sidecar calls", () => {
  it("handshakes with protocol 1, torch version and devices", () => {
    expect(sc.capabilities.protocol).toBe(1);
    expect(sc.capabilities.torch).toMatch(/^2\./);
    expect(sc.capabilities.devices).toContain("cpu");
    expect(sc.capabilities.limits.maxMessageBytes).toBe(MAX);
  });

  it("moves tensors of every dtype both ways unchanged (small on control, large on bulk)", async () => {
    const inputs = {
      f32: tensor("F32", [2, 3], new Float32Array([1, -2, 3.5, Number.NaN, Infinity, -0])),
      f64: tensor("F64", [2], new Float64Array([Math.PI, -1e300])),
      bf16: tensor("BF16", [3], new Uint16Array([0x3f80, 0xc000, 0x7fc0])),
      f16: tensor("F16", [2], new Uint16Array([0x3c00, 0xfbff])),
      i64: tensor("I64", [2], new BigInt64Array([-(2n ** 62n), 7n])),
      i32: tensor("I32", [1, 1], new Int32Array([-5])),
      u8: tensor("U8", [0], new Uint8Array(0)),
      bool: tensor("BOOL", [2], new Uint8Array([1, 0])),
      big: tensor("F32", [512, 1024], Float32Array.from({ length: 512 * 1024 }, (_, i) => i)),
    };
    const { result, named } = await sc.call("echo", {}, inputs);
    expect(result.count).toBe(9);
    for (const [k, t] of Object.entries(inputs)) {
      expect(named[k]!.dtype, k).toBe(t.dtype);
      expect(named[k]!.shape, k).toEqual(t.shape);
      expect(Buffer.from(named[k]!.data.buffer, named[k]!.data.byteOffset, named[k]!.data.byteLength).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)), k).toBe(true);
    }
  });

  it("a Python exception arrives as RemoteError with type and traceback", async () => {
    const err = await sc.call("fail", { type: "ValueError", message: "bad value in layer 3" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    const r = err as RemoteError;
    expect(r.pyType).toBe("ValueError");
    expect(r.message).toContain("bad value in layer 3");
    expect(r.pyTraceback.join("\n")).toMatch(/diagnostics\.py.*\n.*raise exc_type/);
  });

  it("a call past its deadline rejects with TimeoutError and the sidecar stops it", async () => {
    const t0 = performance.now();
    await expect(sc.call("sleep", { ms: 20_000 }, undefined, { timeoutMs: 300 })).rejects.toBeInstanceOf(TimeoutError);
    expect(performance.now() - t0).toBeLessThan(1500);
    // The compute thread is free again soon: a following call is not stuck behind 20 s of sleep.
    const { result } = await sc.call("sleep", { ms: 1 }, undefined, { timeoutMs: 3000 });
    expect(result.slept).toBeGreaterThanOrEqual(1);
  });

  it("cancelling a running call rejects it and frees the sidecar", async () => {
    const ac = new AbortController();
    const p = sc.call("sleep", { ms: 20_000 }, undefined, { signal: ac.signal });
    setTimeout(() => ac.abort(), 200);
    await expect(p).rejects.toBeInstanceOf(CancelledError);
    const t0 = performance.now();
    await sc.call("sleep", { ms: 1 }, undefined, { timeoutMs: 3000 });
    expect(performance.now() - t0).toBeLessThan(1000);
    await expect(sc.call("ping", {}, undefined, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(CancelledError);
  });

  it("ping is answered while a long op computes, and progress events arrive", async () => {
    const events: ProgressEvent[] = [];
    let slowDone = false;
    const slow = sc.call("sleep", { ms: 1500 }, undefined, { onProgress: (e) => events.push(e) }).then(() => {
      slowDone = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    const pingMs = await sc.ping();
    expect(slowDone).toBe(false); // answered by the IO thread, not queued behind the compute thread
    expect(pingMs).toBeLessThan(1000);
    await slow;
    expect(events.length).toBeGreaterThan(3);
    expect(events.at(-1)).toMatchObject({ phase: "sleep", done: 1500, total: 1500, unit: "ms" });
  });

  it("a large transfer on the bulk socket does not hold up a ping on the control socket", async () => {
    const big = tensor("U8", [3 * 2 ** 20]); // under this sidecar's 4 MiB cap; bulk from 1 MiB
    const transfers = Array.from({ length: 8 }, () => sc.call("echo", {}, [big]));
    const order: string[] = [];
    const bulkDone = Promise.all(transfers).then(() => order.push("bulk"));
    const pinged = sc.ping().then(() => order.push("ping"));
    await Promise.all([bulkDone, pinged]);
    expect(order[0]).toBe("ping");
  });

  it("1,000 concurrent small calls are all answered, each with its own value", async () => {
    const calls = Array.from({ length: 1000 }, (_, i) =>
      sc.call("echo", { value: i }, [tensor("I32", [1], new Int32Array([i]))]).then(({ result, tensors }) => {
        expect(result.value).toBe(i);
        expect((tensors[0]!.data as Int32Array)[0]).toBe(i);
        return i;
      }));
    const got = await Promise.all(calls);
    expect(new Set(got).size).toBe(1000);
  });

  it("an oversized message is refused: locally, and by the sidecar for a raw client; the sidecar stays up", async () => {
    const big = tensor("U8", [MAX + 1]);
    await expect(sc.call("echo", { echo: false }, [big])).rejects.toBeInstanceOf(ProtocolError);
    const replies = await rawExchange([
      [encode({ v: 1, id: 41, kind: "request", method: "echo", params: {}, tensors: [{ dtype: "U8", shape: [3 * 2 ** 20], nbytes: 3 * 2 ** 20 }, { dtype: "U8", shape: [2 ** 20 + 1], nbytes: 2 ** 20 + 1 }] }),
        new Uint8Array(3 * 2 ** 20), new Uint8Array(2 ** 20 + 1)],
    ]);
    expect(replies[0]).toMatchObject({ id: 41, kind: "error", error: { type: "Protocol" } });
    expect((replies[0] as { error: { message: string } }).error.message).toContain(`over the ${MAX}-byte limit`);
    expect(await sc.ping()).toBeLessThan(1000);
  });

  it("malformed messages get ProtocolError replies naming the problem; the sidecar stays up", async () => {
    const replies = await rawExchange([
      [new Uint8Array([0xc1, 0x00, 0x13])],
      [encode([1, 2, 3])],
      [encode({ v: 1, id: 7, kind: "request", method: "sleep", params: { ms: "long" }, tensors: [] })],
      [encode({ v: 1, id: 8, kind: "request", method: "noSuchOp", params: {}, tensors: [] })],
      [encode({ v: 1, id: 9, kind: "request", method: "echo", params: {}, tensors: [{ dtype: "F32", shape: [4], nbytes: 16 }] }), new Uint8Array(12)],
      [encode({ v: 9, id: 10, kind: "request", method: "ping", params: {}, tensors: [] })],
    ]);
    const messages = replies.map((r) => (r as { error: { type: string; message: string } }).error);
    expect(messages.every((e) => e.type === "Protocol")).toBe(true);
    expect(messages[0]!.message).toContain("not a msgpack");
    expect(messages[1]!.message).toContain("must be a msgpack map");
    expect(messages[2]!.message).toContain("sleep params: ms");
    expect(messages[3]!.message).toContain("unknown method 'noSuchOp'");
    expect(messages[4]!.message).toContain("raw frame has 12 bytes");
    expect(messages[5]!.message).toMatch(/v: 1 was expected|protocol version/);
    // And through the client: params that break the schema come back as ProtocolError.
    await expect(sc.call("sleep", { ms: -1 })).rejects.toBeInstanceOf(ProtocolError);
    expect(await sc.ping()).toBeLessThan(1000);
  });
});

/** Send raw multipart messages to the sidecar from a second client, one at a time, and collect the replies. */
async function rawExchange(messages: Uint8Array[][]): Promise<unknown[]> {
  const sock = new Dealer({ linger: 0, receiveTimeout: 10_000 });
  sock.connect(sc.endpoint!);
  const out: unknown[] = [];
  try {
    for (const m of messages) {
      await sock.send(m);
      const [head] = await sock.receive();
      out.push(decode(head!));
    }
  } finally {
    sock.close();
  }
  return out;
}
