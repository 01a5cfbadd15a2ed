/**
 * Admission and scheduling of generation requests on one model. A request waits in a bounded queue until a slot
 * (and its adapter) is free, then runs; overload is an immediate `OverloadedError`, cancellation (the request's
 * `signal`) frees its slot at the next step.
 */
import { OverloadedError } from "../errors.js";
import { generateBatch } from "../generation/generate.js";
import type { GenerateOptions, GenerationDelta, GenerationResult } from "../generation/generate-options.js";
import type { TextModel } from "../generation/text-model.js";
import type { AdapterRegistry } from "./adapter-registry.js";

export interface SchedulerLimits {
  readonly maxBatchSize: number;
  readonly maxQueue: number;
  readonly maxTokensInFlight: number;
}

interface Waiting {
  readonly tokens: number;
  readonly start: () => void;
  readonly refuse: (err: Error) => void;
  readonly signal: AbortSignal | undefined;
}

export class Scheduler {
  readonly #model: TextModel;
  readonly #registry: AdapterRegistry;
  readonly #limits: SchedulerLimits;
  readonly #queue: Waiting[] = [];
  #running = 0;
  #tokensInFlight = 0;
  #steps = 0;
  #closed = false;

  constructor(model: TextModel, registry: AdapterRegistry, limits: SchedulerLimits) {
    this.#model = model;
    this.#registry = registry;
    this.#limits = limits;
  }

  gauges(): { queueDepth: number; batchSize: number; steps: number } {
    return { queueDepth: this.#queue.length, batchSize: this.#running, steps: this.#steps };
  }

  async submit(ids: readonly number[], options: GenerateOptions, emit: (d: GenerationDelta) => void): Promise<GenerationResult> {
    const tokens = ids.length + (options.maxNewTokens ?? 64);
    await this.#admit(tokens, options.signal);
    const adapter = options.adapter ?? null;
    try {
      if (adapter !== null) await this.#registry.acquire(adapter);
      try {
        const decoders = this.#model.tokenizer ? () => {
          const d = this.#model.tokenizer!.streamDecoder({ skipSpecialTokens: true });
          return { push: (id: number) => d.push(id), flush: () => d.flush() };
        } : undefined;
        const [res] = await generateBatch(this.#model.lora, [ids], options, (d) => {
          this.#steps++;
          emit(d);
        }, decoders);
        return res!;
      } finally {
        if (adapter !== null) this.#registry.release(adapter);
      }
    } finally {
      this.#running--;
      this.#tokensInFlight -= tokens;
      this.#next();
    }
  }

  /** Wait for a slot: immediately when one is free and nobody queues, else in FIFO order; refuse past the bound. */
  #admit(tokens: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.#closed) return Promise.reject(new OverloadedError("the engine is shutting down"));
    if (this.#queue.length === 0 && this.#fits(tokens)) {
      this.#take(tokens);
      return Promise.resolve();
    }
    if (this.#queue.length >= this.#limits.maxQueue) {
      return Promise.reject(new OverloadedError(`server overloaded: ${this.#running} requests running and ${this.#queue.length} queued (the limit); retry later`));
    }
    return new Promise((resolve, reject) => {
      const w: Waiting = { tokens, signal, start: () => resolve(), refuse: reject };
      this.#queue.push(w);
      signal?.addEventListener("abort", () => {
        const i = this.#queue.indexOf(w);
        if (i >= 0) {
          this.#queue.splice(i, 1);
          reject(signal.reason instanceof Error ? signal.reason : new Error("request cancelled while queued"));
        }
      }, { once: true });
    });
  }

  #fits(tokens: number): boolean {
    return this.#running < this.#limits.maxBatchSize && (this.#running === 0 || this.#tokensInFlight + tokens <= this.#limits.maxTokensInFlight);
  }

  #take(tokens: number): void {
    this.#running++;
    this.#tokensInFlight += tokens;
  }

  #next(): void {
    while (this.#queue.length > 0 && this.#fits(this.#queue[0]!.tokens)) {
      const w = this.#queue.shift()!;
      this.#take(w.tokens);
      w.start();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#queue.splice(0)) w.refuse(new OverloadedError("the engine is shutting down"));
  }
}
