/**
 * Calls in flight: ids, deadlines, abort signals, progress, and mapping replies to promises. Every call settles
 * exactly once: with its reply, its timeout, its abort, or the sidecar's exit (all pending calls at once).
 */
import { decode } from "@msgpack/msgpack";
import { CancelledError, ProtocolError, RemoteError, SidecarError, TimeoutError } from "../../errors.js";
import type { ProgressEvent } from "../../progress.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { ErrorMessage, ProgressMessage, RequestMessage } from "../generated/protocol.js";
import type { CallOptions, CallResult } from "../options.js";
import { PROTOCOL_VERSION, decodeMessage, encodeHeader, encodeTensors, moveToSharedMemory, type TensorsIn } from "./codec.js";
import type { SharedMemory } from "./shared-memory.js";
import type { Frames } from "./transport.js";

interface Pending {
  readonly method: string;
  resolve(value: CallResult<unknown>): void;
  reject(err: Error): void;
  readonly onProgress: CallOptions["onProgress"];
  cleanup(): void;
}

export interface RpcHooks {
  sendControl(frames: Frames): Promise<void>;
  sendBulk(frames: Frames): Promise<void>;
  /** A cancelled or timed-out call was not stopped by the sidecar within the grace period. */
  onStuck(method: string, id: number): void;
  readonly bulkThreshold: number;
  readonly maxMessageBytes: () => number;
  readonly cancelGraceMs: number;
  /** The session's shared-memory folder for big tensors, both ways; undefined: frames only. */
  readonly sharedMemory: SharedMemory | undefined;
}

export class Rpc {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Calls given up on (timeout/abort) whose final reply has not come yet: id → kill timer. */
  private readonly abandoned = new Map<number, NodeJS.Timeout>();
  private closedWith: Error | undefined;

  constructor(private readonly hooks: RpcHooks) {}

  get inFlight(): number {
    return this.pending.size;
  }

  call(method: string, params: object, tensors: TensorsIn | undefined, opts: CallOptions, defaultTimeoutMs: number | undefined): Promise<CallResult<unknown>> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (opts.signal?.aborted) return Promise.reject(new CancelledError(`${method} cancelled before it was sent`));
    const id = this.nextId++;
    let enc;
    try {
      enc = encodeTensors(tensors);
      const max = this.hooks.maxMessageBytes();
      if (enc.nbytes > max) {
        return Promise.reject(new ProtocolError(`${method}: ${enc.nbytes} tensor bytes exceed the ${max}-byte message limit`));
      }
      // Only now, with the message known to be acceptable, are big tensors written to shared memory.
      if (this.hooks.sharedMemory !== undefined) enc = moveToSharedMemory(enc, this.hooks.sharedMemory);
    } catch (e) {
      return Promise.reject(e);
    }
    const timeoutMs = opts.timeoutMs ?? defaultTimeoutMs;
    const header: RequestMessage = {
      v: PROTOCOL_VERSION, id, kind: "request", method, params, tensors: enc.descriptors,
      deadline: timeoutMs === undefined ? null : Date.now() + timeoutMs,
    };
    const frames: Frames = [encodeHeader(header), ...enc.frames];
    return new Promise<CallResult<unknown>>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => this.giveUp(id, new CancelledError(`${method} #${id} cancelled`));
      const p: Pending = {
        method, resolve, reject, onProgress: opts.onProgress,
        cleanup: () => {
          if (timer) clearTimeout(timer);
          opts.signal?.removeEventListener("abort", onAbort);
        },
      };
      this.pending.set(id, p);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => this.giveUp(id, new TimeoutError(`${method} #${id} passed its ${timeoutMs} ms deadline`)), timeoutMs);
      }
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      const send = enc.nbytes >= this.hooks.bulkThreshold ? this.hooks.sendBulk(frames) : this.hooks.sendControl(frames);
      send.catch((e: Error) => this.settle(id, (q) => q.reject(new SidecarError("E_SIDECAR_SEND", `${method}: could not send: ${e.message}`))));
    });
  }

  /** Reject now, ask the sidecar to stop, and have it killed if it does not answer within the grace period. */
  private giveUp(id: number, err: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.settle(id, (q) => q.reject(err));
    const cancel = encodeHeader({ v: PROTOCOL_VERSION, id, kind: "cancel" });
    this.hooks.sendControl([cancel]).catch(() => {});
    const t = setTimeout(() => {
      this.abandoned.delete(id);
      this.hooks.onStuck(p.method, id);
    }, this.hooks.cancelGraceMs);
    t.unref();
    this.abandoned.set(id, t);
  }

  private settle(id: number, how: (p: Pending) => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.cleanup();
    how(p);
  }

  /** One received message, from either socket. */
  onMessage(frames: Buffer[]): void {
    let msg;
    try {
      msg = decodeMessage(frames, this.hooks.sharedMemory);
    } catch (e) {
      // Without a readable header there is no call to blame; a readable id with bad tensors fails that call.
      const id = peekId(frames);
      if (id !== undefined) this.settle(id, (p) => p.reject(e as Error));
      return;
    }
    const h = msg.header;
    if (h.kind === "event" || h.kind === "request" || h.kind === "cancel") return;
    const id = h.id;
    if (id === null) return; // a protocol error about a message we could not have sent (e.g. a raw test frame)
    const stuck = this.abandoned.get(id);
    if (stuck && h.kind !== "progress") {
      clearTimeout(stuck);
      this.abandoned.delete(id);
    }
    if (h.kind === "progress") {
      this.pending.get(id)?.onProgress?.(toProgressEvent(h));
      return;
    }
    if (h.kind === "result") {
      const named: Record<string, Tensor> = {};
      msg.names.forEach((n, i) => {
        if (n !== undefined) named[n] = msg.tensors[i]!;
      });
      this.settle(id, (p) => p.resolve({ result: h.result, tensors: msg.tensors, named }));
      return;
    }
    this.settle(id, (p) => p.reject(toError(h, p.method)));
  }

  /** The sidecar is gone (or closing): every pending call rejects with `err`, and later calls too until `reopen`. */
  failAll(err: Error, permanently: boolean): void {
    if (permanently) this.closedWith = err;
    for (const id of [...this.pending.keys()]) this.settle(id, (p) => p.reject(err));
    for (const t of this.abandoned.values()) clearTimeout(t);
    this.abandoned.clear();
  }
}

function toProgressEvent(h: ProgressMessage): ProgressEvent {
  const w = h.progress;
  return {
    phase: w.phase, done: w.done,
    ...(w.total != null ? { total: w.total } : {}),
    ...(w.unit != null ? { unit: w.unit } : {}),
    ...(w.message != null ? { message: w.message } : {}),
  };
}

function toError(h: ErrorMessage, method: string): Error {
  const e = h.error;
  switch (e.type) {
    case "Protocol":
      return new ProtocolError(`${method}: ${e.message}`);
    case "Cancelled":
      return new CancelledError(e.message);
    case "DeadlineExceeded":
      return new TimeoutError(e.message);
    default:
      return new RemoteError(e.type, e.message, e.traceback, h.id ?? undefined);
  }
}

function peekId(frames: Buffer[]): number | undefined {
  try {
    const header = decode(frames[0]!) as { id?: unknown };
    return typeof header.id === "number" ? header.id : undefined;
  } catch {
    return undefined;
  }
}
