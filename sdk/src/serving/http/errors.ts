/**
 * Errors of the HTTP server in OpenAI's shape, as vLLM sends them: `{"error": {"message", "type", "param", "code"}}`
 * with `code` the HTTP status. Every failure a handler meets goes through `toHttpError` once: loraport's typed errors
 * keep their meaning (a bad option is a 400 naming the request field, overload a 429), anything unexpected is a 500
 * with its message's first line and never a stack.
 */
import { AdapterError, LoraportError, OverloadedError } from "../../errors.js";
import { GenerationOptionError } from "../../generation/sampling-options.js";
import type { OpenAIErrorBody } from "./openai-types.js";

/** A response the server decided on: status, OpenAI error `type`, message and the request field at fault. */
export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  constructor(status: number, type: string, message: string, param: string | null = null) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.type = type;
    this.param = param;
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.status } };
  }
}

export const badRequest = (message: string, param: string | null = null): HttpError => new HttpError(400, "BadRequestError", message, param);
export const notFound = (message: string, param: string | null = null): HttpError => new HttpError(404, "NotFoundError", message, param);

/** The model named in a request is neither the base nor a loaded adapter (vLLM's 404 and message). */
export const modelNotFound = (model: string): HttpError => notFound(`The model \`${model}\` does not exist.`, "model");

/** How a generation option (as `GenerateOptions` spells it) is named in the request body. */
export type ParamNames = Readonly<Record<string, string>>;

/** `GenerateOptions` names → OpenAI request fields, shared by both generation routes (each may override some). */
export const OPTION_PARAMS: ParamNames = {
  temperature: "temperature",
  topK: "top_k",
  topP: "top_p",
  minP: "min_p",
  repetitionPenalty: "repetition_penalty",
  seed: "seed",
  stop: "stop",
  maxNewTokens: "max_tokens",
  ignoreEos: "ignore_eos",
  prompt: "prompt",
  adapter: "model",
};

/** The request field a `GenerationOptionError` is about (`stop[1]` → `stop`; unknown names pass through). */
export function paramOf(option: string, names: ParamNames): string {
  const base = option.replace(/\[\d+\]$/, "");
  return names[base] ?? base;
}

/**
 * Any error → an `HttpError`: `GenerationOptionError` → 400 naming the field, `OverloadedError` → 429, an adapter
 * that is not loaded → 404 for `model`, other `LoraportError` → 400, anything else → 500.
 */
export function toHttpError(err: unknown, names: ParamNames = OPTION_PARAMS): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof GenerationOptionError) {
    const param = paramOf(err.option, names);
    // The message names the TS option ("topP: expected ..."); say it with the field the client sent.
    const message = err.message.startsWith(`${err.option}:`) ? `${param}${err.message.slice(err.option.length)}` : err.message;
    return badRequest(message, param);
  }
  if (err instanceof OverloadedError) return new HttpError(429, "RateLimitError", err.message);
  if (err instanceof AdapterError && /is not loaded/.test(err.message)) return notFound(err.message, "model");
  if (err instanceof LoraportError) return badRequest(err.message);
  const message = err instanceof Error ? err.message : String(err);
  return new HttpError(500, "InternalServerError", `internal error: ${message.split("\n")[0] ?? ""}`);
}
