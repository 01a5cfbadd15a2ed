/**
 * An exported model (`loraport export`) running in ONNX Runtime on a worker thread, with LoRA adapters
 * registered by name and chosen per request. An adapter-inputs export serves any number of adapters of any rank
 * from one session; a merged export runs its one adapter with no overhead.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { AdapterError, ArgumentError, RuntimeError, UnsupportedFeatureError } from "../errors.js";
import { resolveModelPath } from "../hub/resolve-model.js";
import type { ProgressCallback } from "../progress.js";
import { tensor, type Tensor } from "../tensor/index.js";
import { describeValue } from "../tensor/describe-value.js";
import { adapterFeeds, baseFeeds, type AdapterSource } from "./adapter-feeds.js";
import { readManifest, type OnnxManifest } from "./manifest.js";
import { chooseProviders, type ExecutionProvider, type ProviderRequest } from "./providers.js";
import { BASE_ADAPTER, type WireTensor, type WorkerKvLayout, type WorkerLoraLayout, type WorkerRequest, type WorkerResponse } from "./worker-protocol.js";
import { readSafetensors } from "../formats/safetensors/index.js";

export interface LoraModelOptions {
  /** `auto` (default): CUDA when installed and a GPU is present, else CPU. */
  readonly executionProviders?: ProviderRequest;
  readonly intraOpNumThreads?: number;
  readonly interOpNumThreads?: number;
  readonly onProgress?: ProgressCallback;
  /**
   * Budget for the logits one `run` or `prefill` may make, in bytes (F32: rows × tokens × vocab × 4 for a causal LM;
   * the graph computes them all even where only the last position is returned). A request over it throws
   * ArgumentError before any work. Default `DEFAULT_MAX_LOGITS_BYTES` (2 GiB); raise it for bigger batches.
   */
  readonly maxLogitsBytes?: number;
}

/** Default `maxLogitsBytes`: 2 GiB of F32 logits per request (e.g. 8 rows × 1,300 tokens at GPT-2's 50,257 vocab). */
export const DEFAULT_MAX_LOGITS_BYTES = 2 * 2 ** 30;

/** Token ids: one sequence, or a batch of equal-length sequences. */
export interface ModelInputs {
  readonly inputIds: readonly number[] | readonly (readonly number[])[];
  /** Same shape as `inputIds`; all ones when omitted. */
  readonly attentionMask?: readonly number[] | readonly (readonly number[])[];
}

export interface RunOptions {
  /** A registered adapter's name; omitted or null = the base model (rank 0) or, for a merged export, its adapter. */
  readonly adapter?: string | null;
  /**
   * One adapter per batch row (null = the base), instead of `adapter`: a mixed batch in one `session.run`
   * (adapter-inputs exports; rows with whole-tensor heads cannot be mixed).
   */
  readonly adapters?: readonly (string | null)[];
}

export interface RunResult {
  /** F32 logits: `[batch, sequence, vocab]` (causal LM) or `[batch, labels]` (sequence classification). */
  readonly logits: Tensor;
  /** The execution provider that ran the session. */
  readonly provider: ExecutionProvider;
  readonly adapter: string | null;
  /** Time inside `session.run` in the worker, ms. */
  readonly ms: number;
  /** Time the worker spent assembling the feeds (inputs + the chosen adapter's factors) before `run`, ms: the cost of the adapter switch. */
  readonly prepMs: number;
}

/** A batch of sequences whose KV cache lives in the session worker (from `prefill`; free it with `release`). */
export interface CachedBatch {
  readonly id: number;
  /** Rows in the batch. */
  readonly rows: number;
  readonly adapter: string | null;
}

/** The logits of one cached step: the last position of every row. */
export interface StepResult {
  /** F32 `[rows, vocab]`. */
  readonly logits: Tensor;
  /** Time inside `session.run` in the worker, ms. */
  readonly ms: number;
}

interface WorkerState {
  readonly pending: Map<number, { resolve(r: WorkerResponse & { ok: true }): void; reject(e: Error): void }>;
  closed: boolean;
  error: Error | undefined;
}

const BASE = BASE_ADAPTER;

export class LoraModel {
  readonly dir: string;
  readonly manifest: OnnxManifest;
  /** The execution provider the session runs on. */
  readonly provider: ExecutionProvider;
  /** Set when CUDA was wanted but is not used, with the reason. */
  readonly providerNote: string | undefined;
  readonly inputNames: readonly string[];
  /** The per-request logits budget in bytes (`LoraModelOptions.maxLogitsBytes`). */
  readonly maxLogitsBytes: number;
  readonly #worker: Worker;
  readonly #state: WorkerState;
  readonly #adapters = new Set<string>();
  #nextId = 1;
  #nextBatch = 1;

  private constructor(dir: string, manifest: OnnxManifest, worker: Worker, state: WorkerState, provider: ExecutionProvider, note: string | undefined, inputNames: readonly string[], maxLogitsBytes: number) {
    this.dir = dir;
    this.maxLogitsBytes = maxLogitsBytes;
    this.manifest = manifest;
    this.#worker = worker;
    this.#state = state;
    this.provider = provider;
    this.providerNote = note;
    this.inputNames = inputNames;
  }

  /** Load an exported folder (model.onnx + loraport-onnx.json) and start its session on a worker thread. */
  static async load(dir: string, options: LoraModelOptions = {}): Promise<LoraModel> {
    checkLoadArguments(dir, options);
    dir = await resolveModelPath(dir, { onProgress: options.onProgress });
    const manifest = readManifest(dir);
    if (manifest.mode === "adapter-inputs" && !manifest.lora_index_input) {
      throw new RuntimeError(`${dir}: exported by an earlier loraport (LoRA inputs without factor tables, before mixed-adapter batches); re-export it with 'loraport export'`);
    }
    if (manifest.lora_defaults) {
      // onnxruntime-node ignores feeds for inputs that have an initializer (measured): adapters would be silently dropped.
      throw new UnsupportedFeatureError("lora_defaults", `${dir}: exported with LoRA input defaults for ONNX Runtime's .onnx_adapter mechanism (Python, C#, ORT GenAI); onnxruntime-node would ignore loraport's adapter feeds on it. Export without --ort-adapter-defaults for loraport's runtime`);
    }
    const choice = chooseProviders(options.executionProviders ?? "auto");
    options.onProgress?.({ phase: "load", done: 0, total: 1, unit: "sessions", message: `creating session (${choice.providers.join(", ")})` });
    const worker = startWorker();
    const state: WorkerState = { pending: new Map(), closed: false, error: undefined };
    LoraModel.#attach(worker, state);
    let init: WorkerResponse & { ok: true };
    try {
      init = await new Promise((resolve, reject) => {
        state.pending.set(0, { resolve, reject });
        const req: WorkerRequest = {
          id: 0, op: "init", modelPath: join(dir, manifest.model_file), providers: choice.providers,
          ...(manifest.generation ? { kv: workerKv(manifest) } : {}),
          ...(manifest.mode === "adapter-inputs" && manifest.lora_index_input ? { lora: workerLora(manifest) } : {}),
          ...(options.intraOpNumThreads !== undefined ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
          ...(options.interOpNumThreads !== undefined ? { interOpNumThreads: options.interOpNumThreads } : {}),
        };
        worker.postMessage(req);
      });
    } catch (err) {
      await worker.terminate();
      throw new RuntimeError(`${join(dir, manifest.model_file)}: ONNX Runtime could not create a session: ${(err as Error).message}`, { cause: err });
    }
    const model = new LoraModel(dir, manifest, worker, state, init.provider ?? "cpu", choice.note, init.inputNames ?? [], options.maxLogitsBytes ?? DEFAULT_MAX_LOGITS_BYTES);
    const missing = [...manifest.lora.flatMap((e) => [e.a_input, e.b_input]), ...manifest.heads.map((h) => h.input), ...(manifest.tokens ?? []).flatMap((t) => [t.ids_input, t.rows_input]), ...(manifest.lora_index_input ? [manifest.lora_index_input] : [])].filter((n) => !model.inputNames.includes(n));
    if (missing.length > 0) {
      await model.close();
      throw new RuntimeError(`${dir}: graph lacks LoRA inputs named in the manifest: ${missing.slice(0, 3).join(", ")} (manifest and model.onnx from different exports?)`);
    }
    if (manifest.mode === "adapter-inputs") {
      try {
        const heads = manifest.head_defaults_file ? (await readSafetensors(join(dir, manifest.head_defaults_file))).tensors : new Map();
        await model.#request({ id: 0, op: "setAdapter", name: BASE, feeds: baseFeeds(manifest, heads) });
      } catch (err) {
        await model.close();
        throw err;
      }
    }
    options.onProgress?.({ phase: "load", done: 1, total: 1, unit: "sessions", message: `on ${model.provider}` });
    return model;
  }

  /** Routes worker replies to pending promises; a dead worker fails everything pending and later. */
  static #attach(worker: Worker, state: WorkerState): void {
    worker.on("message", (res: WorkerResponse) => {
      const p = state.pending.get(res.id);
      if (!p) return;
      state.pending.delete(res.id);
      if (res.ok) p.resolve(res);
      else p.reject(new RuntimeError(res.error));
    });
    const fail = (err: Error): void => {
      state.error = err;
      for (const p of state.pending.values()) p.reject(err);
      state.pending.clear();
    };
    worker.on("error", (err) => fail(new RuntimeError(`session worker failed: ${err.message}`, { cause: err })));
    worker.on("exit", (code) => {
      if (!state.closed) fail(new RuntimeError(`session worker exited (code ${code})`));
    });
  }

  #request(req: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<WorkerResponse & { ok: true }> {
    if (this.#state.closed) return Promise.reject(new RuntimeError(`${this.dir}: model is closed`));
    if (this.#state.error) return Promise.reject(this.#state.error);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#state.pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...req, id }, transfer);
    });
  }

  /** Names of the registered adapters. */
  get adapters(): string[] {
    return [...this.#adapters];
  }

  /**
   * Register an adapter under `name` (replacing one of the same name). Checked against the exported graph:
   * a module the graph has no inputs for, or factors of other sizes, throw `ShapeMismatchError`.
   */
  async registerAdapter(name: string, adapter: AdapterSource): Promise<void> {
    if (this.manifest.mode !== "adapter-inputs") {
      throw new AdapterError(`${this.dir}: this model was exported with mode '${this.manifest.mode}' (its adapter is merged in); export with --mode adapter-inputs to register adapters`);
    }
    if (typeof name !== "string" || !name || name === BASE) throw new ArgumentError("name", `expected an adapter name (a non-empty string), got ${describeValue(name)}`);
    const feeds = adapterFeeds(this.manifest, adapter);
    await this.#request({ id: 0, op: "setAdapter", name, feeds }, Object.values(feeds).map((t) => t.data.buffer as ArrayBuffer));
    this.#adapters.add(name);
  }

  async unregisterAdapter(name: string): Promise<void> {
    if (!this.#adapters.delete(name)) return;
    await this.#request({ id: 0, op: "dropAdapter", name });
  }

  /** Each row's adapter as the worker names it (null for a graph without LoRA inputs), checked and registered. */
  #rows(options: RunOptions, batch: number): string[] | null {
    if (options === null || typeof options !== "object" || Array.isArray(options)) throw new ArgumentError("options", `expected a RunOptions object, got ${describeValue(options)}`);
    const per = options.adapters;
    if (options.adapter != null && typeof options.adapter !== "string") throw new ArgumentError("options.adapter", `expected an adapter name or null, got ${describeValue(options.adapter)}`);
    if (per !== undefined) {
      if (options.adapter != null) throw new ArgumentError("options", "give either adapter (one for the batch) or adapters (one per row), not both");
      if (!Array.isArray(per) || per.length !== batch) throw new ArgumentError("options.adapters", `expected one entry per batch row (${batch}), got ${describeValue(per)}`);
      per.forEach((a, i) => {
        if (a !== null && typeof a !== "string") throw new ArgumentError(`options.adapters[${i}]`, `expected an adapter name or null, got ${describeValue(a)}`);
      });
    }
    const names = per ?? Array<string | null>(batch).fill(options.adapter ?? null);
    for (const a of names) {
      if (a !== null && !this.#adapters.has(a)) throw new AdapterError(`adapter '${a}' is not registered (registered: ${this.adapters.join(", ") || "none"})`);
    }
    if (this.manifest.mode !== "adapter-inputs") {
      if (names.some((a) => a !== null)) throw new AdapterError(`${this.dir}: this model was exported with mode '${this.manifest.mode}' (its adapter is merged in); export with --mode adapter-inputs to choose adapters`);
      return null;
    }
    return names.map((a) => a ?? BASE);
  }

  /** Whether this export has a KV cache (`prefill`/`decode`, and so generation). */
  get hasKvCache(): boolean {
    return this.manifest.generation != null;
  }

  /**
   * Run prompt rows (left-padded: `attentionMask` 0 on the left) and keep their KV cache in the worker. Returns the
   * last position's logits of every row and the batch to `decode` on. Positions are transformers' generate ones.
   */
  async prefill(inputs: ModelInputs, options: RunOptions = {}): Promise<StepResult & { readonly batch: CachedBatch }> {
    if (!this.hasKvCache) throw new RuntimeError(`${this.dir}: this export has no KV cache (exported without one, or by an earlier loraport); re-export it to generate`);
    const { ids, mask, dims } = this.#encode(inputs);
    const rows = this.#rows(options, dims[0]!);
    const batch: CachedBatch = { id: this.#nextBatch++, rows: dims[0]!, adapter: options.adapter ?? null };
    const res = await this.#request({ id: 0, op: "prefill", seq: batch.id, rows, inputIds: ids, attentionMask: mask, dims: [dims[0]!, dims[1]!] }, [ids.buffer as ArrayBuffer, mask.buffer as ArrayBuffer]);
    return { batch, ...this.#stepResult(res) };
  }

  /** Feed one new token per row of a cached batch; returns the new position's logits. */
  async decode(batch: CachedBatch, tokens: readonly number[]): Promise<StepResult> {
    checkBatch(batch, "batch");
    const vocab = Number(this.manifest.config["vocab_size"] ?? Number.POSITIVE_INFINITY);
    if (!Array.isArray(tokens) || tokens.length !== batch.rows) throw new ArgumentError("tokens", `expected ${batch.rows} token ids (one per row), got ${describeValue(tokens)}`);
    const data = new BigInt64Array(tokens.length);
    for (const [i, t] of tokens.entries()) {
      if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t >= vocab) throw new ArgumentError(`tokens[${i}]`, `expected a token id (an integer in [0, ${vocab})), got ${describeValue(t)}`);
      data[i] = BigInt(t);
    }
    const res = await this.#request({ id: 0, op: "decode", seq: batch.id, tokens: data }, [data.buffer as ArrayBuffer]);
    return this.#stepResult(res);
  }

  /** Append `from`'s rows to `into` (their caches aligned in the worker); `from` is consumed. Continuous batching. */
  async mergeBatches(into: CachedBatch, from: CachedBatch): Promise<CachedBatch> {
    checkBatch(into, "into");
    checkBatch(from, "from");
    await this.#request({ id: 0, op: "merge", into: into.id, from: from.id });
    return { id: into.id, rows: into.rows + from.rows, adapter: into.adapter === from.adapter ? into.adapter : null };
  }

  /** Keep only rows `keep` (in that order) of a cached batch, e.g. when sequences finish; none left = released. */
  async keepRows(batch: CachedBatch, keep: readonly number[]): Promise<CachedBatch> {
    checkBatch(batch, "batch");
    if (!Array.isArray(keep)) throw new ArgumentError("keep", `expected an array of row indices, got ${describeValue(keep)}`);
    keep.forEach((r, i) => {
      if (typeof r !== "number" || !Number.isInteger(r) || r < 0 || r >= batch.rows) throw new ArgumentError(`keep[${i}]`, `expected a row index (an integer in [0, ${batch.rows})), got ${describeValue(r)}`);
    });
    await this.#request({ id: 0, op: "keepRows", seq: batch.id, keep: [...keep] });
    return { id: batch.id, rows: keep.length, adapter: batch.adapter };
  }

  /** Drop a cached batch's KV cache from the worker. */
  async release(batch: CachedBatch): Promise<void> {
    checkBatch(batch, "batch");
    if (this.#state.closed) return;
    await this.#request({ id: 0, op: "release", seq: batch.id });
  }

  #stepResult(res: WorkerResponse & { ok: true }): StepResult {
    const out = res.outputs?.["logits"];
    if (!out || out.type !== "float32") throw new RuntimeError(`${this.dir}: model returned no float32 'logits' output`);
    return { logits: tensor("F32", out.dims, out.data as Float32Array), ms: res.ms ?? 0 };
  }

  /** Run a forward pass with the named adapter (or the base model). Requests queue on the worker in order. */
  async run(inputs: ModelInputs, options: RunOptions = {}): Promise<RunResult> {
    const { ids, mask, dims } = this.#encode(inputs);
    const rows = this.#rows(options, dims[0]!);
    const adapter = options.adapter ?? null;
    const wire: Record<string, WireTensor> = {
      input_ids: { type: "int64", dims, data: ids },
      attention_mask: { type: "int64", dims, data: mask },
    };
    const res = await this.#request({ id: 0, op: "run", rows, inputs: wire, outputs: ["logits"] }, [ids.buffer as ArrayBuffer, mask.buffer as ArrayBuffer]);
    const out = res.outputs?.["logits"];
    if (!out || out.type !== "float32") throw new RuntimeError(`${this.dir}: model returned no float32 'logits' output`);
    return { logits: tensor("F32", out.dims, out.data as Float32Array), provider: res.provider ?? this.provider, adapter, ms: res.ms ?? 0, prepMs: res.prepMs ?? 0 };
  }

  #encode(inputs: ModelInputs): { ids: BigInt64Array; mask: BigInt64Array; dims: number[] } {
    if (inputs === null || typeof inputs !== "object" || Array.isArray(inputs)) {
      throw new ArgumentError("inputs", `expected { inputIds, attentionMask? }, got ${describeValue(inputs)}`);
    }
    const rows = toRows(inputs.inputIds, "inputs.inputIds");
    const maskRows = inputs.attentionMask === undefined ? undefined : toRows(inputs.attentionMask, "inputs.attentionMask");
    const seq = rows[0]!.length;
    if (seq === 0) throw new ArgumentError("inputs.inputIds", "expected at least one token");
    const vocab = Number(this.manifest.config["vocab_size"] ?? Number.POSITIVE_INFINITY);
    const maxPos = Number(this.manifest.config["n_positions"] ?? this.manifest.config["max_position_embeddings"] ?? Number.POSITIVE_INFINITY);
    if (seq > maxPos) throw new ArgumentError("inputs.inputIds", `${seq} tokens exceed the model's ${maxPos} positions`);
    if (maskRows !== undefined && maskRows.length !== rows.length) {
      throw new ArgumentError("inputs.attentionMask", `expected ${rows.length} rows (as inputIds), got ${maskRows.length}`);
    }
    // Checked before allocating: 200 rows × 64 tokens of GPT-2 would be 2.6 GB of logits.
    if (this.manifest.task === "causal-lm" && Number.isFinite(vocab)) {
      const bytes = rows.length * seq * vocab * 4;
      if (bytes > this.maxLogitsBytes) {
        throw new ArgumentError("inputs.inputIds", `${rows.length} rows × ${seq} tokens make ${rows.length} × ${seq} × ${vocab} F32 logits = ${gb(bytes)}, over the maxLogitsBytes budget of ${gb(this.maxLogitsBytes)}; send fewer rows or tokens per call, or raise maxLogitsBytes in LoraModel.load's options`);
      }
    }
    const ids = new BigInt64Array(rows.length * seq);
    const mask = new BigInt64Array(rows.length * seq);
    for (const [b, row] of rows.entries()) {
      const m = maskRows?.[b];
      // A single row is row 0 of a batch of one (`inputIds[0][t]`), as in the messages before.
      const rowName = (field: "inputIds" | "attentionMask") => `inputs.${field}[${b}]`;
      if (row.length !== seq) throw new ArgumentError(rowName("inputIds"), `every row must have ${seq} token ids (as row 0), got ${row.length}`);
      if (m !== undefined && m.length !== seq) throw new ArgumentError(rowName("attentionMask"), `expected ${seq} entries (as inputIds), got ${m.length}`);
      for (let t = 0; t < seq; t++) {
        const id: unknown = row[t];
        if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocab) {
          throw new ArgumentError(`${rowName("inputIds")}[${t}]`, `expected a token id (an integer in [0, ${vocab})), got ${describeValue(id)}`);
        }
        ids[b * seq + t] = BigInt(id);
        const mv: unknown = m === undefined ? 1 : m[t];
        if (mv !== 0 && mv !== 1) throw new ArgumentError(`${rowName("attentionMask")}[${t}]`, `expected 0 or 1, got ${describeValue(mv)}`);
        mask[b * seq + t] = mv === 1 ? 1n : 0n;
      }
    }
    return { ids, mask, dims: [rows.length, seq] };
  }

  /** Stop the worker and release the session. */
  async close(): Promise<void> {
    if (this.#state.closed) return;
    try {
      await this.#request({ id: 0, op: "close" });
    } catch {
      // The worker is going away either way.
    }
    this.#state.closed = true;
    await this.#worker.terminate();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function workerLora(manifest: OnnxManifest): WorkerLoraLayout {
  return {
    index: manifest.lora_index_input!, modules: manifest.lora.map((e) => ({ a: e.a_input, b: e.b_input, in: e.in_features, out: e.out_features })),
    tokens: (manifest.tokens ?? []).map((t) => ({ ids: t.ids_input, rows: t.rows_input, dim: t.embedding_dim })),
  };
}

function workerKv(manifest: OnnxManifest): WorkerKvLayout {
  const kv = manifest.generation!.kv_cache;
  return { past: kv.past_inputs, present: kv.present_outputs, positionIds: kv.position_ids_input, kvHeads: kv.kv_heads, headDim: kv.head_dim };
}

/** One row (an array of numbers) or a batch (an array of arrays), as rows; anything else is an ArgumentError. */
function toRows(x: unknown, field: string): (readonly unknown[])[] {
  if (!Array.isArray(x) || x.length === 0) throw new ArgumentError(field, `expected a non-empty array of token ids, or of rows of them; got ${describeValue(x)}`);
  if (!Array.isArray(x[0])) return [x];
  return x.map((row: unknown, i) => {
    if (!Array.isArray(row)) throw new ArgumentError(`${field}[${i}]`, `expected a row (an array), as row 0 is; got ${describeValue(row)}`);
    return row;
  });
}

function gb(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${bytes} bytes`;
}

function checkBatch(batch: unknown, argument: string): asserts batch is CachedBatch {
  const b = batch as Partial<CachedBatch> | null;
  if (b === null || typeof b !== "object" || !Number.isSafeInteger(b.id) || !Number.isSafeInteger(b.rows)) {
    throw new ArgumentError(argument, `expected a CachedBatch (from prefill), got ${describeValue(batch)}`);
  }
}

function checkLoadArguments(dir: unknown, options: unknown): void {
  if (typeof dir !== "string" || dir.length === 0) throw new ArgumentError("dir", `expected an exported model folder (a path), got ${describeValue(dir)}`);
  if (options === null || typeof options !== "object" || Array.isArray(options)) throw new ArgumentError("options", `expected a LoraModelOptions object, got ${describeValue(options)}`);
  const o = options as Record<string, unknown>;
  const ep = o["executionProviders"];
  if (ep !== undefined && ep !== "auto" && !Array.isArray(ep)) throw new ArgumentError("options.executionProviders", `expected "auto" or a list of "cuda" | "cpu", got ${describeValue(ep)}`);
  for (const k of ["intraOpNumThreads", "interOpNumThreads"]) {
    const v = o[k];
    if (v !== undefined && (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)) throw new ArgumentError(`options.${k}`, `expected an integer ≥ 0 (0: ONNX Runtime's default), got ${describeValue(v)}`);
  }
  if (o["onProgress"] !== undefined && typeof o["onProgress"] !== "function") throw new ArgumentError("options.onProgress", `expected a function, got ${describeValue(o["onProgress"])}`);
  const m = o["maxLogitsBytes"];
  if (m !== undefined && (typeof m !== "number" || Number.isNaN(m) || m <= 0)) throw new ArgumentError("options.maxLogitsBytes", `expected a number of bytes > 0 (Infinity: no budget), got ${describeValue(m)}`);
}

/**
 * The worker runs from dist (`.js`) normally. From source (vitest, tsx) the worker file is `.ts`: Node 20 does not
 * pass `--import tsx` hooks on to worker threads, so a tiny bootstrap registers tsx inside the worker first.
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL("./session-worker.js", import.meta.url));
  // The package's ESM entry of tsx/esm/api (its CJS entry cannot be imported from an ESM worker).
  const tsxRoot = dirname(createRequire(import.meta.url).resolve("tsx/package.json"));
  const tsxApi = pathToFileURL(join(tsxRoot, "dist/esm/api/index.mjs")).href;
  const entry = new URL("./session-worker.ts", import.meta.url).href;
  const boot = `const { register } = await import(${JSON.stringify(tsxApi)}); register(); await import(${JSON.stringify(entry)});`;
  return new Worker(boot, { eval: true });
}

/** Logits of the last position of batch row `row` (causal LM), or that row's class logits (classification). */
export function lastLogits(result: RunResult, row = 0): Float32Array {
  const { shape, data } = result.logits;
  const d = data as Float32Array;
  if (shape.length === 2) return d.slice(row * shape[1]!, (row + 1) * shape[1]!);
  const [, seq, vocab] = shape as [number, number, number];
  const start = (row * seq + seq - 1) * vocab;
  return d.slice(start, start + vocab);
}
