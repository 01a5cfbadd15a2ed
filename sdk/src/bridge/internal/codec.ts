/**
 * The wire codec: a message is `[msgpack header, raw tensor frame, ...]`. Tensor bytes travel as their own
 * frames (C-contiguous, little-endian) and are never put inside the msgpack document: that would cost an encode
 * copy and land the bytes at an unaligned offset.
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import { ProtocolError } from "../../errors.js";
import { isDType, itemsize } from "../../tensor/dtype.js";
import { bytesOf, fromBytes, numel } from "../../tensor/tensor-impl.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { TensorDescriptor, WireMessage } from "../generated/protocol.js";
import { readSharedTensor, writeSharedTensor, type SharedMemory } from "./shared-memory.js";

export const PROTOCOL_VERSION = 1;

const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

/** Tensors as a list, or by name (the name travels in the descriptor). */
export type TensorsIn = readonly Tensor[] | Readonly<Record<string, Tensor>>;

export interface EncodedTensors {
  readonly descriptors: TensorDescriptor[];
  readonly frames: Uint8Array[];
  readonly nbytes: number;
}

/** Descriptors and frames (views of the tensors' own bytes, no copy). */
export function encodeTensors(tensors: TensorsIn | undefined): EncodedTensors {
  const descriptors: TensorDescriptor[] = [];
  const frames: Uint8Array[] = [];
  let nbytes = 0;
  const entries: Array<[string | undefined, Tensor]> = tensors === undefined ? [] : Array.isArray(tensors)
    ? (tensors as readonly Tensor[]).map((t) => [undefined, t])
    : Object.entries(tensors as Readonly<Record<string, Tensor>>);
  for (const [name, t] of entries) {
    const bytes = bytesOf(t);
    const want = numel(t.shape) * itemsize(t.dtype);
    if (bytes.byteLength !== want) {
      throw new ProtocolError(`tensor ${name ?? descriptors.length}: ${t.dtype} [${t.shape.join(", ")}] needs ${want} bytes, its data has ${bytes.byteLength}`);
    }
    const d: TensorDescriptor = { dtype: t.dtype, shape: [...t.shape], nbytes: want };
    if (name !== undefined) d.name = name;
    descriptors.push(d);
    frames.push(bytes);
    nbytes += want;
  }
  return { descriptors, frames, nbytes };
}

/**
 * `enc` with every tensor of at least `shm.threshold` bytes written to shared memory (descriptor `shm: true`,
 * the file's name as its frame). A file that cannot be written (/dev/shm full) leaves that tensor a plain frame.
 */
export function moveToSharedMemory(enc: EncodedTensors, shm: SharedMemory): EncodedTensors {
  if (!enc.frames.some((f) => f.byteLength >= shm.threshold)) return enc; // small calls: nothing to copy
  const descriptors = enc.descriptors.map((d) => ({ ...d }));
  const frames = enc.frames.map((bytes, i) => {
    if (bytes.byteLength < shm.threshold) return bytes;
    try {
      const name = writeSharedTensor(shm, bytes);
      descriptors[i]!.shm = true;
      return name;
    } catch {
      return bytes;
    }
  });
  return { descriptors, frames, nbytes: enc.nbytes };
}

export function encodeHeader(header: WireMessage): Uint8Array {
  return encoder.encode(header);
}

export interface DecodedMessage {
  readonly header: WireMessage;
  readonly tensors: Tensor[];
  readonly names: Array<string | undefined>;
}

/**
 * Header + tensors from received frames (and shared-memory files, which are unlinked once mapped). Anything
 * malformed is a ProtocolError naming what was wrong.
 */
export function decodeMessage(frames: readonly Buffer[], shm?: SharedMemory): DecodedMessage {
  const [head, ...raw] = frames;
  if (head === undefined) throw new ProtocolError("message with no frames");
  let header: unknown;
  try {
    header = decoder.decode(head);
  } catch (e) {
    throw new ProtocolError(`header frame is not msgpack: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) throw new ProtocolError("header is not a map");
  const h = header as Partial<WireMessage> & { tensors?: unknown };
  if (h.v !== PROTOCOL_VERSION) throw new ProtocolError(`protocol version ${String(h.v)} != ${PROTOCOL_VERSION}`);
  const descs = (h.tensors ?? []) as TensorDescriptor[];
  if (!Array.isArray(descs) || descs.length !== raw.length) {
    throw new ProtocolError(`header describes ${Array.isArray(descs) ? descs.length : "no"} tensors but ${raw.length} raw frames followed`);
  }
  const tensors: Tensor[] = [];
  const names: Array<string | undefined> = [];
  for (const [i, d] of descs.entries()) {
    if (!isDType(d.dtype) || !Array.isArray(d.shape)) throw new ProtocolError(`tensor ${i}: bad descriptor ${JSON.stringify(d)}`);
    const frame = d.shm === true ? readSharedTensor(shm, raw[i]!, d.nbytes, d.name ?? String(i)) : raw[i]!;
    try {
      tensors.push(fromBytes(d.dtype, d.shape, frame));
    } catch (e) {
      throw new ProtocolError(`tensor ${d.name ?? i}: ${(e as Error).message}`);
    }
    names.push(d.name);
  }
  return { header: header as WireMessage, tensors, names };
}
