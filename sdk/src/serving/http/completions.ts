/**
 * `POST /v1/completions`: one prompt (text, or token ids) → one choice, whole or streamed. `max_tokens` defaults to
 * 16 as OpenAI's does; `n` other than 1, `echo`, `logprobs` and `suffix` are refused with a 400 naming the field.
 */
import { randomUUID } from "node:crypto";
import type { JsonObject } from "./body.js";
import { badRequest, OPTION_PARAMS } from "./errors.js";
import { resolveModel, runGeneration, usageOf, finishReasonOf, type ResponseFormat, type RouteContext } from "./generation-route.js";
import type { Completion } from "./openai-types.js";
import { optionalInteger, refuseUnsupported, samplingOptions, streamFields } from "./request-fields.js";

/** OpenAI's default `max_tokens` for completions. */
export const COMPLETION_DEFAULT_MAX_TOKENS = 16;

/** `prompt`: a string or token ids; a one-element list of either is unwrapped (clients send that too). */
function promptOf(body: JsonObject): string | number[] {
  let p = body["prompt"];
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === "string" || Array.isArray(p[0]))) p = p[0] as unknown;
  if (typeof p === "string") return p;
  if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === "number")) {
    const bad = (p as number[]).find((x) => !Number.isSafeInteger(x) || x < 0);
    if (bad !== undefined) throw badRequest(`prompt: expected non-negative integer token ids, got ${bad}`, "prompt");
    return p as number[];
  }
  if (Array.isArray(p) && p.length > 1 && p.every((x) => typeof x === "string" || Array.isArray(x))) {
    throw badRequest(`prompt: one prompt per request is supported, got a list of ${p.length}; send one request per prompt`, "prompt");
  }
  throw badRequest("prompt: expected a string or a non-empty array of token ids", "prompt");
}

export async function completions(ctx: RouteContext): Promise<void> {
  const body = ctx.body;
  const { model, adapter } = resolveModel(ctx.engine, body);
  refuseUnsupported(body, "echo", (v) => v === false, "echo");
  refuseUnsupported(body, "logprobs", () => false, "logprobs");
  refuseUnsupported(body, "suffix", (v) => v === "", "suffix");
  const prompt = promptOf(body);
  const mode = streamFields(body);
  // vLLM's extension: the new token ids beside the text (whole responses here).
  const returnIds = body["return_token_ids"] === true;
  if (returnIds && mode.stream) throw badRequest("return_token_ids: supported for non-streaming completions only", "return_token_ids");
  const options = samplingOptions(body);
  options.maxNewTokens = optionalInteger(body, "max_tokens") ?? COMPLETION_DEFAULT_MAX_TOKENS;
  options.adapter = adapter;
  options.signal = ctx.signal;

  const id = `cmpl-${randomUUID().replaceAll("-", "")}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (text: string, finish: Completion["choices"][number]["finish_reason"]): Completion => ({
    id, object: "text_completion", created, model, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
    ...(mode.includeUsage ? { usage: null } : {}),
  });
  const format: ResponseFormat = {
    whole: (r) => ({ id, object: "text_completion", created, model, choices: [{ index: 0, text: r.text, logprobs: null, finish_reason: finishReasonOf(r), ...(returnIds ? { token_ids: r.tokens } : {}) }], usage: usageOf(r) } satisfies Completion),
    opening: () => [],
    piece: (text) => chunk(text, null),
    finish: (reason) => chunk("", reason),
    usage: (usage) => ({ id, object: "text_completion", created, model, choices: [], usage } satisfies Completion),
  };
  await runGeneration(ctx, { prompt, options }, mode, format, OPTION_PARAMS);
}
