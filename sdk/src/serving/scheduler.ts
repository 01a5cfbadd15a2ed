/**
 * Continuous (iteration-level) batching on one model: requests wait in a bounded queue, join the running batch
 * between decode steps (their prompts prefilled together, then their caches merged into the batch's in the worker),
 * and leave when done; every row may use its own adapter (the graph's factor tables), so one `session.run` per step
 * serves every request. Overload is an immediate `OverloadedError`; a request's `signal` frees its slot at the next
 * step. Limits: rows in the batch, tokens in flight (prompt + max new tokens of every running row), queued requests.
 */
import { OverloadedError } from "../errors.js";
import { leftPad, padId, requireGeneration } from "../generation/generate.js";
import type { GenerateOptions, GenerationDelta, GenerationResult } from "../generation/generate-options.js";
import { Sequence, checkGeneration, type CheckedOptions } from "../generation/sequence.js";
import type { TextModel } from "../generation/text-model.js";
import type { CachedBatch } from "../runtime/lora-model.js";
import type { AdapterRegistry } from "./adapter-registry.js";

export interface SchedulerLimits {
  readonly maxBatchSize: number;
  readonly maxQueue: number;
  readonly maxTokensInFlight: number;
}

interface Request {
  readonly ids: readonly number[];
  readonly options: GenerateOptions;
  readonly checked: CheckedOptions;
  readonly emit: (d: GenerationDelta) => void;
  readonly resolve: (r: GenerationResult) => void;
  readonly reject: (e: unknown) => void;
  readonly tokens: number;
}

interface Row {
  readonly req: Request;
  readonly seq: Sequence;
  /** The token to feed at the next decode step. */
  next: number;
}

export class Scheduler {
  readonly #model: TextModel;
  readonly #registry: AdapterRegistry;
  readonly #limits: SchedulerLimits;
  readonly #queue: Request[] = [];
  #rows: Row[] = [];
  #batch: CachedBatch | undefined;
  #tokensInFlight = 0;
  #steps = 0;
  #loop: Promise<void> | undefined;
  #closed = false;

  constructor(model: TextModel, registry: AdapterRegistry, limits: SchedulerLimits) {
    this.#model = model;
    this.#registry = registry;
    this.#limits = limits;
  }

  gauges(): { queueDepth: number; batchSize: number; steps: number } {
    return { queueDepth: this.#queue.length, batchSize: this.#rows.length, steps: this.#steps };
  }

  /** Queue one request (token ids); resolves with its result when it finishes. */
  submit(ids: readonly number[], options: GenerateOptions, emit: (d: GenerationDelta) => void): Promise<GenerationResult> {
    if (this.#closed) return Promise.reject(new OverloadedError("the engine is shutting down"));
    const checked = checkGeneration(requireGeneration(this.#model.lora), [ids], options, this.#model.tokenizer !== null);
    if (this.#queue.length >= this.#limits.maxQueue && !this.#hasRoomNow(ids.length + checked.maxNew)) {
      return Promise.reject(new OverloadedError(`server overloaded: ${this.#rows.length} requests running and ${this.#queue.length} queued (the limit); retry later`));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ ids, options, checked, emit, resolve, reject, tokens: ids.length + checked.maxNew });
      this.#loop ??= this.#run().finally(() => (this.#loop = undefined));
    });
  }

  /** Whether a request could join at the next step (the queue bound counts only those that must wait). */
  #hasRoomNow(tokens: number): boolean {
    const waiting = this.#queue.reduce((n, r) => n + r.tokens, 0);
    return this.#rows.length + this.#queue.length < this.#limits.maxBatchSize && this.#tokensInFlight + waiting + tokens <= this.#limits.maxTokensInFlight;
  }

  async #run(): Promise<void> {
    while (this.#queue.length > 0 || this.#rows.length > 0) {
      try {
        await this.#admit();
        await this.#step();
      } catch (err) {
        // A failed model call fails the rows it ran; the batch is gone with them.
        for (const r of this.#rows) this.#finish(r, err);
        this.#rows = [];
        if (this.#batch) await this.#model.lora.release(this.#batch).catch(() => undefined);
        this.#batch = undefined;
      }
    }
  }

  /** Move queued requests that fit into the batch: prefill them together, then merge their cache into the batch's. */
  async #admit(): Promise<void> {
    const joining: Request[] = [];
    for (;;) {
      const req = this.#queue[0];
      if (!req || req.options.signal?.aborted) {
        if (req) {
          this.#queue.shift();
          req.resolve(new Sequence(0, req.ids, req.options, req.checked, req.emit, undefined, 0).result());
          continue;
        }
        break;
      }
      const rows = this.#rows.length + joining.length;
      const fits = rows === 0 || (rows < this.#limits.maxBatchSize && this.#tokensInFlight + req.tokens <= this.#limits.maxTokensInFlight);
      if (!fits) break;
      const adapter = req.options.adapter ?? null;
      try {
        // Every adapter slot held by running rows: wait for one to finish (FIFO: later requests wait too).
        if (adapter !== null && !(await this.#registry.tryAcquire(adapter))) break;
      } catch (err) {
        this.#queue.shift();
        req.reject(err);
        continue;
      }
      this.#queue.shift();
      this.#tokensInFlight += req.tokens;
      joining.push(req);
    }
    if (joining.length === 0) return;
    const seqs = joining.map((req) => new Sequence(0, req.ids, req.options, req.checked, req.emit, this.#model.pieceDecoders()?.(), 0));
    let step;
    try {
      step = await this.#model.lora.prefill(leftPad(joining.map((r) => r.ids), padId(this.#model.lora)), { adapters: joining.map((r) => r.options.adapter ?? null) });
    } catch (err) {
      joining.forEach((req) => this.#finish({ req, seq: seqs[0]!, next: 0 }, err));
      return;
    }
    const vocab = step.logits.shape[1]!;
    const data = step.logits.data as Float32Array;
    const rows = joining.map((req, i) => ({ req, seq: seqs[i]!, next: seqs[i]!.step(data.subarray(i * vocab, (i + 1) * vocab)) }));
    if (this.#batch) this.#batch = await this.#model.lora.mergeBatches(this.#batch, step.batch);
    else this.#batch = step.batch;
    this.#rows.push(...rows);
    await this.#retire();
  }

  /** One decode step for every running row, then retire the rows that finished. */
  async #step(): Promise<void> {
    if (!this.#batch || this.#rows.length === 0) return;
    for (const r of this.#rows) if (r.req.options.signal?.aborted) r.seq.abort();
    await this.#retire();
    if (!this.#batch || this.#rows.length === 0) return;
    const { logits } = await this.#model.lora.decode(this.#batch, this.#rows.map((r) => r.next));
    this.#steps++;
    const vocab = logits.shape[1]!;
    const data = logits.data as Float32Array;
    this.#rows.forEach((r, i) => (r.next = r.seq.step(data.subarray(i * vocab, (i + 1) * vocab))));
    await this.#retire();
  }

  /** Resolve finished rows and drop them from the worker's batch (one copy of the remaining cache). */
  async #retire(): Promise<void> {
    if (!this.#rows.some((r) => r.seq.done)) return;
    const keep = this.#rows.flatMap((r, i) => (r.seq.done ? [] : [i]));
    for (const r of this.#rows) if (r.seq.done) this.#finish(r);
    this.#rows = keep.map((i) => this.#rows[i]!);
    if (!this.#batch) return;
    if (keep.length === 0) {
      await this.#model.lora.release(this.#batch);
      this.#batch = undefined;
    } else {
      this.#batch = await this.#model.lora.keepRows(this.#batch, keep);
    }
  }

  #finish(r: Row, err?: unknown): void {
    this.#tokensInFlight -= r.req.tokens;
    const adapter = r.req.options.adapter ?? null;
    if (adapter !== null) this.#registry.release(adapter);
    if (err === undefined) r.req.resolve(r.seq.result());
    else r.req.reject(err);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const req of this.#queue.splice(0)) req.reject(new OverloadedError("the engine is shutting down"));
    await this.#loop;
  }
}
