/**
 * The local engine: one exported model in ONNX Runtime (`TextModel`), adapters held by an `AdapterRegistry`, and
 * requests admitted through a bounded queue: at most `maxBatchSize` sequences run at once, at most `maxQueue` wait;
 * past that a request fails at once with `OverloadedError` (never unbounded memory).
 */
import { basename, resolve } from "node:path";
import { AdapterError, OverloadedError } from "../errors.js";
import type { GenerationResult } from "../generation/generate-options.js";
import { GenerationStream } from "../generation/generation-stream.js";
import { TextModel, type Prompt } from "../generation/text-model.js";
import type { LoraModelOptions } from "../runtime/lora-model.js";
import { AdapterRegistry, type AdapterRegistryOptions } from "./adapter-registry.js";
import type { Engine, EngineModels, EngineRequest, EngineStats } from "./engine.js";
import { Scheduler } from "./scheduler.js";

export interface LocalEngineOptions extends LoraModelOptions, AdapterRegistryOptions {
  /** The base model's name in `models()` and the OpenAI `model` field (default: the export folder's name). */
  readonly name?: string;
  /** Sequences decoded together at most (default 16). */
  readonly maxBatchSize?: number;
  /** Requests waiting for a slot at most; one more is refused with `OverloadedError` (default 64). */
  readonly maxQueue?: number;
  /** Prompt + new tokens of all running sequences at most (default: maxBatchSize × the model's positions). */
  readonly maxTokensInFlight?: number;
}

export class LocalEngine implements Engine {
  readonly model: TextModel;
  readonly registry: AdapterRegistry;
  readonly name: string;
  readonly #scheduler: Scheduler;
  #requests = 0;
  #rejected = 0;
  #promptTokens = 0;
  #generated = 0;

  private constructor(model: TextModel, registry: AdapterRegistry, scheduler: Scheduler, name: string) {
    this.model = model;
    this.registry = registry;
    this.#scheduler = scheduler;
    this.name = name;
  }

  static async start(dir: string, options: LocalEngineOptions = {}): Promise<LocalEngine> {
    const model = await TextModel.load(dir, options);
    const registry = new AdapterRegistry(model.lora, options);
    const positions = model.lora.manifest.generation?.max_positions ?? 2048;
    const maxBatch = Math.max(1, options.maxBatchSize ?? 16);
    const scheduler = new Scheduler(model, registry, {
      maxBatchSize: maxBatch, maxQueue: Math.max(0, options.maxQueue ?? 64), maxTokensInFlight: options.maxTokensInFlight ?? maxBatch * positions,
    });
    return new LocalEngine(model, registry, scheduler, options.name ?? basename(resolve(dir)));
  }

  generate(request: EngineRequest): GenerationStream<GenerationResult> {
    this.#requests++;
    return new GenerationStream(async (emit) => {
      const adapter = request.options.adapter ?? null;
      if (adapter !== null && !this.registry.has(adapter)) {
        throw new AdapterError(`adapter '${adapter}' is not loaded (loaded: ${this.registry.names().join(", ") || "none"})`);
      }
      const ids = await this.model.encodePrompt(request.prompt, request.options.chat);
      try {
        const res = await this.#scheduler.submit(ids, request.options, emit);
        this.#promptTokens += res.promptTokens;
        this.#generated += res.tokens.length;
        return res;
      } catch (err) {
        if (err instanceof OverloadedError) this.#rejected++;
        throw err;
      }
    });
  }

  encodePrompt(prompt: Prompt): Promise<number[]> {
    return this.model.encodePrompt(prompt);
  }

  models(): EngineModels {
    return { base: this.name, adapters: this.registry.names() };
  }

  loadAdapter(name: string, path: string): Promise<void> {
    if (name === this.name) return Promise.reject(new AdapterError(`lora_name '${name}' is the base model's name; choose another`));
    return this.registry.load(name, path);
  }

  unloadAdapter(name: string): Promise<void> {
    return this.registry.unload(name);
  }

  stats(): EngineStats {
    const s = this.#scheduler.gauges();
    return {
      requestsTotal: this.#requests, requestsRejected: this.#rejected, promptTokensTotal: this.#promptTokens, generatedTokensTotal: this.#generated,
      queueDepth: s.queueDepth, batchSize: s.batchSize, stepsTotal: s.steps, adaptersActive: this.registry.activeCount, adaptersLoaded: this.registry.names().length,
    };
  }

  async close(): Promise<void> {
    await this.#scheduler.close();
    await this.model.close();
  }

  /** `await using engine = await LocalEngine.start(...)`: closed at scope end. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
