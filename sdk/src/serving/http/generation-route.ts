/**
 * What both generation routes share: the `model` field resolved to an adapter or the base, and one generation run
 * against the engine, answered whole (JSON) or streamed (server-sent events). A stream opens with the first delta,
 * so a request refused before any token (bad option, unknown adapter, overload) still gets a plain 4xx JSON error;
 * a failure after that is an `{"error": …}` event before `[DONE]`, as vLLM sends it. The request's signal aborts
 * the generation when the client goes away (nothing more is sent) or the server shuts down (503).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { GenerationResult } from "../../generation/generate-options.js";
import type { Engine, EngineRequest } from "../engine.js";
import type { JsonObject } from "./body.js";
import { HttpError, modelNotFound, toHttpError, type ParamNames } from "./errors.js";
import type { OpenAIFinishReason, Usage } from "./openai-types.js";
import { SseStream } from "./sse.js";

/** What a route handler gets for one request. */
export interface RouteContext {
  readonly engine: Engine;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly body: JsonObject;
  /** The model's positions (prompt + new tokens), when known: chat's default `max_tokens` is what is left of it. */
  readonly maxModelLen: number | null;
  /** Aborted when the client disconnects (reason: an Error) or the server shuts down (reason: a 503 `HttpError`). */
  readonly signal: AbortSignal;
  /** Called once per generation the client walked away from (for `/metrics`). */
  readonly onCancelled: () => void;
  /** Remembers where an adapter loaded through the API came from (`root` in `/v1/models`). */
  readonly roots: Map<string, string>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

/** `model` → the adapter to use (null: the base). Absent means the base, as vLLM does; unknown is vLLM's 404. */
export function resolveModel(engine: Engine, body: JsonObject): { model: string; adapter: string | null } {
  const models = engine.models();
  const model = body["model"];
  if (model === undefined || model === null) return { model: models.base, adapter: null };
  if (typeof model !== "string") throw new HttpError(400, "BadRequestError", `model: expected a model name (a string), got ${typeof model}`, "model");
  if (model === models.base) return { model, adapter: null };
  if (models.adapters.includes(model)) return { model, adapter: model };
  throw modelNotFound(model);
}

export function usageOf(r: GenerationResult): Usage {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.tokens.length, total_tokens: r.promptTokens + r.tokens.length };
}

/** loraport's finish reasons as OpenAI's (`abort` never reaches a client: it has gone, or gets a 503). */
export function finishReasonOf(r: GenerationResult): OpenAIFinishReason {
  return r.finishReason === "length" ? "length" : "stop";
}

/** How one route shapes its answers. */
export interface ResponseFormat {
  /** The whole answer (non-streaming). */
  whole(result: GenerationResult): unknown;
  /** Events sent when a stream opens (chat: the assistant's role). */
  opening(): unknown[];
  /** A piece of new text. */
  piece(text: string): unknown;
  /** The last content event, with the finish reason. */
  finish(reason: OpenAIFinishReason): unknown;
  /** The usage event (`stream_options.include_usage`). */
  usage(usage: Usage): unknown;
}

export interface StreamMode {
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

/** Run one generation and answer it. Throws `HttpError` when nothing was sent yet. */
export async function runGeneration(ctx: RouteContext, request: EngineRequest, mode: StreamMode, format: ResponseFormat, names: ParamNames): Promise<void> {
  const { res, signal } = ctx;
  /** The request was aborted: say so on shutdown, else the client is gone and nothing more is sent. */
  const gone = async (sse: SseStream | undefined): Promise<void> => {
    const reason: unknown = signal.reason;
    if (reason instanceof HttpError) {
      if (!sse) throw reason;
      await sse.send(reason.body());
      sse.done();
      return;
    }
    ctx.onCancelled();
    if (!res.destroyed) res.destroy();
  };

  const gen = ctx.engine.generate(request);
  if (!mode.stream) {
    let result: GenerationResult;
    try {
      result = await gen.result;
    } catch (err) {
      if (signal.aborted) return gone(undefined);
      throw toHttpError(err, names);
    }
    if (result.finishReason === "abort" || signal.aborted) return gone(undefined);
    sendJson(res, 200, format.whole(result));
    return;
  }

  let sse: SseStream | undefined;
  const open = async (): Promise<SseStream> => {
    const s = new SseStream(res);
    sse = s;
    for (const e of format.opening()) await s.send(e);
    return s;
  };
  try {
    for await (const d of gen) {
      if (signal.aborted) break;
      const s = sse ?? (await open());
      if (d.text !== "") await s.send(format.piece(d.text));
    }
    const result = await gen.result;
    if (result.finishReason === "abort" || signal.aborted) return gone(sse);
    const s = sse ?? (await open());
    await s.send(format.finish(finishReasonOf(result)));
    if (mode.includeUsage) await s.send(format.usage(usageOf(result)));
    s.done();
  } catch (err) {
    if (signal.aborted) return gone(sse);
    const e = toHttpError(err, names);
    if (!sse) throw e;
    await (sse as SseStream).send(e.body());
    (sse as SseStream).done();
  }
}
