/**
 * The shapes the server sends, as OpenAI's API defines them (and vLLM serves them): completions, chat completions,
 * their stream chunks, usage, the model list and errors. Requests are read field by field (`request-fields.ts`),
 * since they arrive as untrusted JSON.
 */

export type OpenAIFinishReason = "stop" | "length";

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

export interface CompletionChoice {
  readonly index: number;
  readonly text: string;
  readonly logprobs: null;
  readonly finish_reason: OpenAIFinishReason | null;
  /** With `return_token_ids: true` (vLLM's extension): the new token ids. */
  readonly token_ids?: readonly number[];
}

/** `POST /v1/completions` without `stream` (`object: "text_completion"`), and each of its stream chunks. */
export interface Completion {
  readonly id: string;
  readonly object: "text_completion";
  readonly created: number;
  readonly model: string;
  readonly choices: readonly CompletionChoice[];
  readonly usage?: Usage | null;
}

export interface ChatMessageOut {
  readonly role: "assistant";
  readonly content: string;
}

export interface ChatChoice {
  readonly index: number;
  readonly message: ChatMessageOut;
  readonly logprobs: null;
  readonly finish_reason: OpenAIFinishReason;
}

export interface ChatCompletion {
  readonly id: string;
  readonly object: "chat.completion";
  readonly created: number;
  readonly model: string;
  readonly choices: readonly ChatChoice[];
  readonly usage: Usage;
}

export interface ChatChunkChoice {
  readonly index: number;
  readonly delta: { readonly role?: "assistant"; readonly content?: string };
  readonly logprobs: null;
  readonly finish_reason: OpenAIFinishReason | null;
}

export interface ChatCompletionChunk {
  readonly id: string;
  readonly object: "chat.completion.chunk";
  readonly created: number;
  readonly model: string;
  readonly choices: readonly ChatChunkChoice[];
  readonly usage?: Usage | null;
}

/** One entry of `GET /v1/models`; vLLM adds `root`, `parent` (the base, for adapters) and `max_model_len`. */
export interface ModelCard {
  readonly id: string;
  readonly object: "model";
  readonly created: number;
  readonly owned_by: string;
  readonly root: string;
  readonly parent: string | null;
  readonly max_model_len: number | null;
  readonly permission: readonly never[];
}

export interface ModelList {
  readonly object: "list";
  readonly data: readonly ModelCard[];
}

export interface OpenAIErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: string;
    readonly param: string | null;
    /** The HTTP status, as vLLM sends it. */
    readonly code: number;
  };
}
