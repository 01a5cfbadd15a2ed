/**
 * `POST /v1/chat/completions`: the messages go to the engine as they are (the model's chat template renders them,
 * with the generation prompt), one assistant message comes back, whole or streamed as `chat.completion.chunk`
 * deltas: the role first, then content, then an empty delta with the finish reason. `max_completion_tokens` (or the
 * older `max_tokens`) defaults to what is left of the model's positions after the prompt, as vLLM does (when the
 * server is told the positions, `maxModelLen`; else the engine's own default).
 */
import { randomUUID } from "node:crypto";
import type { TextGenerateOptions } from "../../generation/text-model.js";
import type { ChatMessage, ChatTemplateOptions } from "../../tokenizer/index.js";
import type { JsonObject } from "./body.js";
import { badRequest, OPTION_PARAMS, toHttpError } from "./errors.js";
import { finishReasonOf, resolveModel, runGeneration, usageOf, type ResponseFormat, type RouteContext } from "./generation-route.js";
import type { ChatCompletion, ChatCompletionChunk, ChatChunkChoice } from "./openai-types.js";
import { optionalBoolean, optionalInteger, optionalObject, refuseUnsupported, samplingOptions, streamFields } from "./request-fields.js";

/** `messages` as chat messages; OpenAI's text content parts are joined with newlines (as vLLM does). */
function messagesOf(body: JsonObject): ChatMessage[] {
  const messages = body["messages"];
  if (!Array.isArray(messages) || messages.length === 0) throw badRequest("messages: expected a non-empty array of messages [{role, content}]", "messages");
  return messages.map((m: unknown, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m) || typeof (m as ChatMessage).role !== "string") {
      throw badRequest(`messages[${i}]: expected an object {role: string, content}`, "messages");
    }
    const msg = m as ChatMessage;
    const content = msg.content;
    if (content === undefined || content === null || typeof content === "string") return { ...msg };
    if (Array.isArray(content)) {
      const texts = content.map((part: unknown, j) => {
        const p = part as { type?: unknown; text?: unknown } | null;
        if (typeof p !== "object" || p === null || p.type !== "text" || typeof p.text !== "string") {
          throw badRequest(`messages[${i}].content[${j}]: only text parts ({type: "text", text}) are supported`, "messages");
        }
        return p.text;
      });
      return { ...msg, content: texts.join("\n") };
    }
    throw badRequest(`messages[${i}].content: expected a string or an array of text parts`, "messages");
  });
}

/** vLLM's chat-template fields: `add_generation_prompt` (default true) and `chat_template_kwargs`. */
function chatOptionsOf(body: JsonObject): ChatTemplateOptions | undefined {
  const add = optionalBoolean(body, "add_generation_prompt");
  const kwargs = optionalObject(body, "chat_template_kwargs");
  if (add === undefined && kwargs === undefined) return undefined;
  return { ...(add !== undefined ? { addGenerationPrompt: add } : {}), ...(kwargs !== undefined ? { variables: kwargs } : {}) };
}

export async function chatCompletions(ctx: RouteContext): Promise<void> {
  const body = ctx.body;
  const { model, adapter } = resolveModel(ctx.engine, body);
  refuseUnsupported(body, "logprobs", (v) => v === false, "logprobs");
  refuseUnsupported(body, "top_logprobs", () => false, "top_logprobs");
  refuseUnsupported(body, "tools", (v) => Array.isArray(v) && v.length === 0, "tools (function calling)");
  refuseUnsupported(body, "tool_choice", (v) => v === "none" || v === "auto", "tool_choice");
  refuseUnsupported(body, "response_format", (v) => typeof v === "object" && v !== null && (v as { type?: unknown }).type === "text", "response_format other than text");
  const messages = messagesOf(body);
  const mode = streamFields(body);
  const options = samplingOptions(body);
  const chat = chatOptionsOf(body);

  const maxField = body["max_completion_tokens"] !== undefined && body["max_completion_tokens"] !== null ? "max_completion_tokens" : "max_tokens";
  const names = { ...OPTION_PARAMS, prompt: "messages", maxNewTokens: maxField };
  const max = optionalInteger(body, maxField);
  if (max !== undefined) options.maxNewTokens = max;
  else if (ctx.maxModelLen !== null && ctx.engine.encodePrompt) {
    let promptTokens: number;
    try {
      promptTokens = (await ctx.engine.encodePrompt(messages)).length;
    } catch (err) {
      throw toHttpError(err, names);
    }
    // A prompt that leaves no room is refused by the engine (naming `messages`).
    options.maxNewTokens = Math.max(1, ctx.maxModelLen - promptTokens);
  }
  const request: TextGenerateOptions = { ...options, adapter, signal: ctx.signal, ...(chat ? { chat } : {}) };

  const id = `chatcmpl-${randomUUID().replaceAll("-", "")}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choice: ChatChunkChoice): ChatCompletionChunk => ({
    id, object: "chat.completion.chunk", created, model, choices: [choice], ...(mode.includeUsage ? { usage: null } : {}),
  });
  const format: ResponseFormat = {
    whole: (r) => ({
      id, object: "chat.completion", created, model,
      choices: [{ index: 0, message: { role: "assistant", content: r.text }, logprobs: null, finish_reason: finishReasonOf(r) }],
      usage: usageOf(r),
    } satisfies ChatCompletion),
    opening: () => [chunk({ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null })],
    piece: (content) => chunk({ index: 0, delta: { content }, logprobs: null, finish_reason: null }),
    finish: (reason) => chunk({ index: 0, delta: {}, logprobs: null, finish_reason: reason }),
    usage: (usage) => ({ id, object: "chat.completion.chunk", created, model, choices: [], usage } satisfies ChatCompletionChunk),
  };
  await runGeneration(ctx, { prompt: messages, options: request }, mode, format, names);
}
