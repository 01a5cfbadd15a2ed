/** The wire codec alone (no sidecar): tensors become raw frames and come back identical; bad frames are ProtocolErrors. */
import { encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { ProtocolError } from "../../src/errors.js";
import { decodeMessage, encodeHeader, encodeTensors } from "../../src/bridge/internal/codec.js";
import { tensor } from "../../src/tensor/index.js";

const asBuffers = (frames: Uint8Array[]) => frames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength));

describe("bridge codec", () => {
  it("round-trips named tensors as raw frames without copying on the way out", () => {
    const x = tensor("BF16", [2, 2], new Uint16Array([1, 2, 3, 65535]));
    const enc = encodeTensors({ x, y: tensor("I64", [1], new BigInt64Array([-3n])) });
    expect(enc.frames[0]!.buffer).toBe(x.data.buffer); // zero-copy view
    expect(enc.descriptors).toEqual([{ name: "x", dtype: "BF16", shape: [2, 2], nbytes: 8 }, { name: "y", dtype: "I64", shape: [1], nbytes: 8 }]);
    const head = encodeHeader({ v: 1, id: 3, kind: "result", result: {}, tensors: enc.descriptors });
    const msg = decodeMessage(asBuffers([head, ...enc.frames]));
    expect(msg.names).toEqual(["x", "y"]);
    expect(Array.from(msg.tensors[0]!.data as Uint16Array)).toEqual([1, 2, 3, 65535]);
    expect((msg.tensors[1]!.data as BigInt64Array)[0]).toBe(-3n);
  });

  it("copies a frame only when it is not aligned for its dtype", () => {
    const raw = Buffer.alloc(9);
    const unaligned = raw.subarray(1);
    new DataView(unaligned.buffer, unaligned.byteOffset).setFloat64(0, 2.5, true);
    const head = Buffer.from(encode({ v: 1, id: 1, kind: "result", result: {}, tensors: [{ dtype: "F64", shape: [1], nbytes: 8 }] }));
    expect((decodeMessage([head, unaligned]).tensors[0]!.data as Float64Array)[0]).toBe(2.5);
  });

  it("refuses frames that do not match their descriptors, other versions and non-msgpack headers", () => {
    const head = (o: object) => Buffer.from(encode(o));
    expect(() => decodeMessage([head({ v: 1, id: 1, kind: "result", result: {}, tensors: [{ dtype: "F32", shape: [2], nbytes: 8 }] }), Buffer.alloc(4)])).toThrow(ProtocolError);
    expect(() => decodeMessage([head({ v: 1, id: 1, kind: "result", result: {}, tensors: [{ dtype: "F32", shape: [1], nbytes: 4 }] })])).toThrow(/1 tensors but 0 raw frames/);
    expect(() => decodeMessage([head({ v: 2, id: 1, kind: "result", result: {}, tensors: [] })])).toThrow(/protocol version 2/);
    expect(() => decodeMessage([Buffer.from([0xc1])])).toThrow(/not msgpack/);
    expect(() => encodeTensors([{ dtype: "F32", shape: [3], data: new Float32Array(2) }])).toThrow(/needs 12 bytes/);
  });
});
