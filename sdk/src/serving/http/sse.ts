/**
 * Server-sent events as OpenAI streams them: one `data: <JSON>\n\n` event per chunk and `data: [DONE]\n\n` at the
 * end. Writes wait for the socket to drain (a slow reader slows its own stream, never the server's memory).
 */
import type { ServerResponse } from "node:http";

export class SseStream {
  readonly #res: ServerResponse;

  /** Sends the 200 and the event-stream headers now. */
  constructor(res: ServerResponse) {
    this.#res = res;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    res.flushHeaders();
  }

  /** One event; resolves once the socket took it (or the client is gone). */
  async send(data: unknown): Promise<void> {
    const res = this.#res;
    if (res.destroyed || res.writableEnded) return;
    if (res.write(`data: ${JSON.stringify(data)}\n\n`)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });
  }

  /** `data: [DONE]` and the end of the response. */
  done(): void {
    if (!this.#res.destroyed && !this.#res.writableEnded) this.#res.end("data: [DONE]\n\n");
  }
}
