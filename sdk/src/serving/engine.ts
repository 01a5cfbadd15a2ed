/**
 * The engine interface every server and client of loraport's serving path talks to. Two implementations: the local
 * ONNX Runtime engine (`LocalEngine`: one session, adapters registered by name, continuous batching) and the vLLM
 * engine (an OpenAI-compatible vLLM server, past one machine). Code written against `Engine` runs on either.
 */
import type { GenerationResult } from "../generation/generate-options.js";
import type { GenerationStream } from "../generation/generation-stream.js";
import type { Prompt, TextGenerateOptions } from "../generation/text-model.js";

/** One generation request: a prompt and the usual options; `adapter` names a loaded adapter, or null for the base. */
export interface EngineRequest {
  readonly prompt: Prompt;
  readonly options: TextGenerateOptions;
}

export interface EngineModels {
  /** The served base model's name (the export folder's name unless given). */
  readonly base: string;
  /** Every loaded adapter's name. */
  readonly adapters: readonly string[];
}

/** What `/metrics` reports. Counters only grow; gauges are the current value. */
export interface EngineStats {
  readonly requestsTotal: number;
  readonly requestsRejected: number;
  readonly promptTokensTotal: number;
  readonly generatedTokensTotal: number;
  /** Requests waiting for a slot (gauge). */
  readonly queueDepth: number;
  /** Sequences in the running batch (gauge). */
  readonly batchSize: number;
  /** Decode steps run so far. */
  readonly stepsTotal: number;
  /** Adapters registered in the session / loaded in total (gauges). */
  readonly adaptersActive: number;
  readonly adaptersLoaded: number;
}

export interface Engine {
  /** Start one request. Overload (a full queue) rejects `result` (and iteration) with `OverloadedError`. */
  generate(request: EngineRequest): GenerationStream<GenerationResult>;
  models(): EngineModels;
  /** Load (or replace) an adapter from a PEFT folder or a loralib checkpoint. */
  loadAdapter(name: string, path: string): Promise<void>;
  /** Unload an adapter; requests already running with it finish first. Unknown name: `AdapterError`. */
  unloadAdapter(name: string): Promise<void>;
  stats(): EngineStats;
  /** Tokens of a prompt (for usage counts and the OpenAI `prompt` as ids or text). */
  encodePrompt?(prompt: Prompt): Promise<number[]>;
  close(): Promise<void>;
}
