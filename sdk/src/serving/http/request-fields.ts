/**
 * Reading OpenAI request fields from untrusted JSON: each reader checks one field's type (null is "not given", as
 * OpenAI's clients send it) and throws a 400 naming the field. Ranges are the engine's to check (it throws
 * `GenerationOptionError`, mapped back to the field by `errors.ts`). `samplingOptions` reads the fields both
 * generation routes share; fields loraport does not implement are refused, never silently ignored.
 */
import type { GenerateOptions } from "../../generation/generate-options.js";
import type { JsonObject } from "./body.js";
import { badRequest } from "./errors.js";

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `a string (${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)})`;
  return typeof v === "object" ? "an object" : `${typeof v} ${String(v)}`;
}

const wrongType = (field: string, expected: string, v: unknown): Error => badRequest(`${field}: expected ${expected}, got ${describe(v)}`, field);

export function optionalNumber(body: JsonObject, field: string): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw wrongType(field, "a number", v);
  return v;
}

export function optionalInteger(body: JsonObject, field: string): number | undefined {
  const v = optionalNumber(body, field);
  if (v !== undefined && !Number.isSafeInteger(v)) throw wrongType(field, "an integer", v);
  return v;
}

export function optionalBoolean(body: JsonObject, field: string): boolean | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw wrongType(field, "true or false", v);
  return v;
}

export function optionalString(body: JsonObject, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw wrongType(field, "a string", v);
  return v;
}

export function optionalObject(body: JsonObject, field: string): JsonObject | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw wrongType(field, "an object", v);
  return v as JsonObject;
}

/** A field loraport does not implement: fine when absent or equal to its "off" value, else a 400 saying so. */
export function refuseUnsupported(body: JsonObject, field: string, isOff: (v: unknown) => boolean, what: string): void {
  const v = body[field];
  if (v === undefined || v === null || isOff(v)) return;
  throw badRequest(`${field}: ${what} is not supported by this server`, field);
}

/** `stream` and `stream_options.include_usage` (OpenAI refuses stream options without streaming; so does vLLM). */
export function streamFields(body: JsonObject): { stream: boolean; includeUsage: boolean } {
  const stream = optionalBoolean(body, "stream") ?? false;
  const options = optionalObject(body, "stream_options");
  if (options && !stream) throw badRequest("stream_options: only allowed when stream is true", "stream_options");
  const include = options?.["include_usage"];
  if (include !== undefined && include !== null && typeof include !== "boolean") throw wrongType("stream_options", "{include_usage: true | false}", options);
  return { stream, includeUsage: include === true };
}

/** `stop` (a string or strings, OpenAI) and `stop_token_ids` (vLLM) as one loraport `stop` list. */
function stopOf(body: JsonObject): (string | number)[] | undefined {
  const stop = body["stop"];
  const out: (string | number)[] = [];
  if (typeof stop === "string") out.push(stop);
  else if (Array.isArray(stop)) {
    stop.forEach((s: unknown) => {
      if (typeof s !== "string") throw badRequest(`stop: expected a string or an array of strings, got an array holding ${describe(s)}`, "stop");
      out.push(s);
    });
  } else if (stop !== undefined && stop !== null) throw wrongType("stop", "a string or an array of strings", stop);
  const ids = body["stop_token_ids"];
  if (Array.isArray(ids)) {
    for (const id of ids) {
      if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) throw badRequest(`stop_token_ids: expected non-negative integer token ids, got ${describe(id)}`, "stop_token_ids");
      out.push(id);
    }
  } else if (ids !== undefined && ids !== null) throw wrongType("stop_token_ids", "an array of token ids", ids);
  return out.length > 0 ? out : undefined;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * The sampling and stopping fields of both routes, as `GenerateOptions`. `temperature` defaults to 1 as OpenAI's and
 * vLLM's do (send 0 for greedy decoding); `top_k: -1` is vLLM's "off" (0 here).
 */
export function samplingOptions(body: JsonObject): Mutable<GenerateOptions> {
  const n = optionalInteger(body, "n");
  if (n !== undefined && n !== 1) throw badRequest(`n: only n = 1 is supported (one choice per request), got ${n}`, "n");
  refuseUnsupported(body, "best_of", (v) => v === 1, "best_of other than 1");
  refuseUnsupported(body, "presence_penalty", (v) => v === 0, "presence_penalty (use repetition_penalty)");
  refuseUnsupported(body, "frequency_penalty", (v) => v === 0, "frequency_penalty (use repetition_penalty)");
  refuseUnsupported(body, "logit_bias", (v) => typeof v === "object" && v !== null && Object.keys(v).length === 0, "logit_bias");
  refuseUnsupported(body, "use_beam_search", (v) => v === false, "beam search");
  const opts: Mutable<GenerateOptions> = { temperature: optionalNumber(body, "temperature") ?? 1 };
  const topP = optionalNumber(body, "top_p");
  if (topP !== undefined) opts.topP = topP;
  const topK = optionalInteger(body, "top_k");
  if (topK !== undefined) opts.topK = topK === -1 ? 0 : topK;
  const minP = optionalNumber(body, "min_p");
  if (minP !== undefined) opts.minP = minP;
  const penalty = optionalNumber(body, "repetition_penalty");
  if (penalty !== undefined) opts.repetitionPenalty = penalty;
  const seed = optionalInteger(body, "seed");
  if (seed !== undefined) opts.seed = seed;
  const stop = stopOf(body);
  if (stop !== undefined) opts.stop = stop;
  const ignoreEos = optionalBoolean(body, "ignore_eos");
  if (ignoreEos !== undefined) opts.ignoreEos = ignoreEos;
  return opts;
}
