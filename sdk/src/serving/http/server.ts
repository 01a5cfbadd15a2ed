/**
 * An OpenAI-compatible HTTP server over an `Engine`, serving what vLLM's does: `/v1/completions` and
 * `/v1/chat/completions` (streamed as server-sent events with `stream: true`), `/v1/models`, vLLM's
 * `/v1/load_lora_adapter` and `/v1/unload_lora_adapter`, `/health` and Prometheus `/metrics`. Plain `node:http`:
 *
 *   const server = await startServer(engine, { port: 8000, apiKey: process.env.LORAPORT_API_KEY });
 *   console.log(server.url);            // http://127.0.0.1:8000
 *   await server.close();               // aborts running generations, closes every connection
 *
 * It binds 127.0.0.1 unless told otherwise. With `apiKey`, every `/v1/*` route needs `Authorization: Bearer <key>`
 * (`/health` and `/metrics` stay open, as in vLLM). Errors have OpenAI's shape (`errors.ts`). A client that
 * disconnects aborts its generation (the signal in `options.signal`), which frees its slot at the next step.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { LoraportError } from "../../errors.js";
import type { Engine } from "../engine.js";
import { readJsonObject, type JsonObject } from "./body.js";
import { chatCompletions } from "./chat-completions.js";
import { completions } from "./completions.js";
import { HttpError, toHttpError } from "./errors.js";
import { sendJson, type RouteContext } from "./generation-route.js";
import { METRICS_CONTENT_TYPE, renderMetrics, ServerCounters } from "./metrics.js";
import { listModels, loadAdapter, unloadAdapter } from "./models.js";

export interface ServerOptions {
  /** Interface to bind (default 127.0.0.1: this machine only). */
  readonly host?: string;
  /** Port (default 0: any free one; read it from `url`). */
  readonly port?: number;
  /** When set, `/v1/*` requires `Authorization: Bearer <apiKey>` (401 otherwise). */
  readonly apiKey?: string;
  /** Request bodies larger than this are refused with 413 (default 4 MiB). */
  readonly maxBodyBytes?: number;
  /** The model's positions: `max_model_len` in `/v1/models`, and chat's default `max_tokens` (what the prompt leaves). */
  readonly maxModelLen?: number | null;
  /** Where models came from (`root` in `/v1/models`), by name: the export folder for the base, adapter paths. */
  readonly roots?: Readonly<Record<string, string>>;
}

export interface RunningServer extends AsyncDisposable {
  /** `http://host:port`, the port resolved when 0 was asked. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Stop accepting requests, abort running generations (their clients get a 503), close every connection. */
  close(): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

interface Route {
  readonly methods: readonly string[];
  /** Whether the body is read as a JSON object first. */
  readonly json: boolean;
  readonly handle: (ctx: RouteContext) => Promise<void>;
}

export async function startServer(engine: Engine, options: ServerOptions = {}): Promise<RunningServer> {
  const host = options.host ?? "127.0.0.1";
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isSafeInteger(maxBody) || maxBody < 1) throw new LoraportError("E_USAGE", `maxBodyBytes: expected an integer ≥ 1, got ${maxBody}`);
  const maxModelLen = options.maxModelLen ?? null;
  const created = Math.floor(Date.now() / 1000);
  const roots = new Map(Object.entries(options.roots ?? {}));
  const counters = new ServerCounters();
  const expectedAuth = options.apiKey !== undefined ? digest(`Bearer ${options.apiKey}`) : undefined;

  const routes: Record<string, Route> = {
    "/v1/completions": { methods: ["POST"], json: true, handle: completions },
    "/v1/chat/completions": { methods: ["POST"], json: true, handle: chatCompletions },
    "/v1/models": { methods: ["GET"], json: false, handle: async ({ res }) => sendJson(res, 200, listModels(engine, created, maxModelLen, roots)) },
    "/v1/load_lora_adapter": { methods: ["POST"], json: true, handle: ({ body, res }) => loadAdapter(engine, body, res, roots) },
    "/v1/unload_lora_adapter": { methods: ["POST"], json: true, handle: ({ body, res }) => unloadAdapter(engine, body, res, roots) },
    "/health": { methods: ["GET", "HEAD"], json: false, handle: async ({ res }) => void res.writeHead(200, { "content-length": "0" }).end() },
    "/metrics": {
      methods: ["GET"], json: false,
      handle: async ({ res }) => {
        const text = renderMetrics(engine.stats(), counters);
        res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE, "content-length": String(Buffer.byteLength(text)) }).end(text);
      },
    },
  };

  const inflight = new Set<AbortController>();
  const handlers = new Set<Promise<void>>();
  let closing = false;

  async function handle(req: IncomingMessage, res: ServerResponse, path: string, route: Route | undefined): Promise<void> {
    if (closing) throw new HttpError(503, "ServiceUnavailableError", "the server is shutting down");
    if (expectedAuth && (path === "/v1" || path.startsWith("/v1/")) && !timingSafeEqual(digest(req.headers.authorization ?? ""), expectedAuth)) {
      res.setHeader("www-authenticate", "Bearer");
      throw new HttpError(401, "AuthenticationError", "Unauthorized: expected the header 'Authorization: Bearer <api key>' with this server's key");
    }
    if (!route) throw new HttpError(404, "NotFoundError", `no route ${req.method ?? "?"} ${path} (see GET /v1/models, POST /v1/completions, POST /v1/chat/completions)`);
    if (!route.methods.includes(req.method ?? "")) {
      res.setHeader("allow", route.methods.join(", "));
      throw new HttpError(405, "MethodNotAllowed", `${path} takes ${route.methods.join(" or ")}, not ${req.method ?? "?"}`);
    }
    const body: JsonObject = route.json ? await readJsonObject(req, maxBody) : {};
    const ac = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) ac.abort(new Error("the client disconnected"));
    };
    res.on("close", onClose);
    inflight.add(ac);
    try {
      await route.handle({ engine, req, res, body, maxModelLen, signal: ac.signal, onCancelled: () => counters.cancelled++, roots });
    } finally {
      inflight.delete(ac);
      res.off("close", onClose);
    }
  }

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const routeName = Object.hasOwn(routes, path) ? path : "other";
    res.once("finish", () => counters.response(routeName, res.statusCode));
    const p = handle(req, res, path, routes[routeName]).catch((err: unknown) => {
      const e = toHttpError(err);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const headers: Record<string, string> = {};
      if (e.status === 429) headers["retry-after"] = "1";
      // A body refused part-way cannot be read to its end; close the connection after the answer.
      if (e.status === 413) headers["connection"] = "close";
      sendJson(res, e.status, e.body(), headers);
    });
    handlers.add(p);
    void p.finally(() => handlers.delete(p));
  });
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(new LoraportError("E_LISTEN", `cannot listen on ${host}:${options.port ?? 0}: ${err.code ?? err.message}`));
    server.once("error", onError);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  let closed: Promise<void> | undefined;
  return {
    url, host, port,
    close: () => (closed ??= (async () => {
      closing = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      const shutdown = new HttpError(503, "ServiceUnavailableError", "the server is shutting down");
      for (const ac of inflight) ac.abort(shutdown);
      // Aborted generations end at their next step; do not wait on a stuck one forever.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...handlers]), new Promise((r) => (timer = setTimeout(r, 5000)))]);
      clearTimeout(timer);
      server.closeAllConnections();
      await stopped;
    })()),
    // `await using server = await startServer(...)`: closed at scope end.
    [Symbol.asyncDispose](this: RunningServer) {
      return this.close();
    },
  };
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}
