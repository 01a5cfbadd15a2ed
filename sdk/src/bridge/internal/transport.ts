/**
 * Two ZeroMQ Dealer sockets to the sidecar's ROUTERs: `control` for small messages (pings, cancels, small
 * calls) and `bulk` for messages carrying many tensor bytes, so a large transfer never delays a cancel.
 * zeromq.js allows one pending send and one pending receive per socket, so each socket has one send queue and
 * one receive loop.
 */
import { randomBytes } from "node:crypto";
import { Dealer } from "zeromq";
import type { CurveKeys } from "./endpoint.js";

export type Frames = Array<Uint8Array>;

class Link {
  readonly sock: Dealer;
  private queue: Promise<void> = Promise.resolve();

  constructor(routingId: string, endpoint: string, curve: CurveKeys | undefined, hwm: number) {
    this.sock = new Dealer({ routingId, linger: 0, sendHighWaterMark: hwm, receiveHighWaterMark: hwm });
    if (curve) {
      this.sock.curveServerKey = curve.serverPublic;
      this.sock.curvePublicKey = curve.clientPublic;
      this.sock.curveSecretKey = curve.clientSecret;
    }
    this.sock.connect(endpoint);
  }

  /** Queued behind earlier sends. zeromq.js sends without copying: frames must not change until the call settles. */
  send(frames: Frames): Promise<void> {
    const next = this.queue.then(() => this.sock.send(frames));
    this.queue = next.catch(() => {});
    return next;
  }

  async receiveLoop(onMessage: (frames: Buffer[]) => void): Promise<void> {
    try {
      for await (const frames of this.sock) onMessage(frames);
    } catch {
      // The socket was closed under the loop: that is how it ends.
    }
  }

  close(): void {
    if (!this.sock.closed) this.sock.close();
  }
}

export class Transport {
  private readonly control: Link;
  private readonly bulk: Link | undefined;
  readonly loops: Promise<void>;

  constructor(endpoints: { control: string; bulk?: string | undefined }, curve: CurveKeys | undefined, onMessage: (frames: Buffer[]) => void) {
    // The sidecar finds our bulk socket from our control socket's routing id: "C" + token ⇄ "B" + token.
    const token = randomBytes(12).toString("hex");
    this.control = new Link(`C${token}`, endpoints.control, curve, 100_000);
    this.bulk = endpoints.bulk ? new Link(`B${token}`, endpoints.bulk, curve, 16) : undefined;
    this.loops = Promise.all([this.control.receiveLoop(onMessage), this.bulk?.receiveLoop(onMessage)]).then(() => {});
  }

  sendControl(frames: Frames): Promise<void> {
    return this.control.send(frames);
  }

  sendBulk(frames: Frames): Promise<void> {
    return (this.bulk ?? this.control).send(frames);
  }

  get hasBulk(): boolean {
    return this.bulk !== undefined;
  }

  close(): void {
    this.control.close();
    this.bulk?.close();
  }
}
