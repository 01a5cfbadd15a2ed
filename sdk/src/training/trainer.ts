/**
 * `Trainer`: fine-tunes a LoRA adapter from TypeScript with a train-step artifact (see manifest.ts). The state
 * (params, AdamW moments, step) lives here on the main thread; each `fit` hands a copy to the worker thread,
 * which runs the graphs and sends back the new state, progress, eval losses and checkpoint notices.
 */
import { mkdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { CancelledError, FormatError, LoraportError, RuntimeError } from "../errors.js";
import { writeFileAtomic, writeAll } from "../formats/atomic-file.js";
import { readSafetensors, writeSafetensors } from "../formats/safetensors/index.js";
import type { ProgressEvent } from "../progress.js";
import { chooseProviders, type ExecutionProvider, type ProviderRequest } from "../runtime/providers.js";
import { tensor, type Tensor } from "../tensor/index.js";
import { checkExample, type DataLimits, type TrainExample } from "./data.js";
import { planFit } from "./fit-loop.js";
import { readTrainManifest, type TrainManifest } from "./manifest.js";
import type { LrSchedule } from "./schedule.js";
import { freshState, readCheckpoint, writeCheckpoint, type TrainState } from "./state.js";
import type { StepRecord, WireFitOptions, WireState, WorkerMessage, WorkerRequest, WorkerResponse } from "./worker-protocol.js";

export interface TrainerOptions {
  /** `auto` (default): CUDA when usable, else CPU. */
  readonly executionProviders?: ProviderRequest;
  readonly intraOpNumThreads?: number;
  /** Resume from this checkpoint file (params, moments, step and the interrupted fit's position). */
  readonly checkpoint?: string;
}

/** A progress event of `fit`: the generic event (for progress bars) plus the step's figures. */
export interface TrainProgress extends ProgressEvent, StepRecord {
  readonly totalSteps: number;
}

export interface FitOptions {
  readonly epochs?: number;
  /** Stop after this many optimizer steps (overrides `epochs`; the data cycles). */
  readonly maxSteps?: number;
  readonly batchSize?: number;
  /** Peak learning rate (default 1e-3). */
  readonly lr?: number;
  readonly lrSchedule?: LrSchedule;
  /** Micro-batches per optimizer step (default 1). */
  readonly gradientAccumulation?: number;
  readonly evalData?: readonly TrainExample[];
  readonly evalEvery?: number;
  readonly evalBatchSize?: number;
  readonly checkpointEvery?: number;
  /** Checkpoint file (safetensors), rewritten atomically every `checkpointEvery` steps and at the end. */
  readonly checkpointPath?: string;
  /** Shuffle each epoch with a seeded order (default true). */
  readonly shuffle?: boolean;
  readonly seed?: number;
  /** Stops between steps: `fit` rejects with CancelledError; the trainer keeps the last completed step. */
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: TrainProgress) => void;
  readonly onEval?: (event: { step: number; loss: number }) => void;
}

export interface FitResult {
  readonly steps: number;
  readonly history: readonly StepRecord[];
  readonly evals: readonly { step: number; loss: number }[];
  readonly finalLoss: number;
}

function startWorker(): Worker {
  const fromSource = import.meta.url.endsWith(".ts");
  if (!fromSource) return new Worker(new URL("./train-worker.js", import.meta.url));
  // From the TypeScript sources (tests, tsx): `--import tsx` in execArgv does not reach worker threads on
  // Node 20, so the worker loads itself through tsx's API.
  const tsx = tsxApiUrl();
  const entry = new URL("./train-worker.ts", import.meta.url).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((m) => m.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(import.meta.url)}))`, { eval: true });
}

/** tsx's ESM API entry, resolved from this package (the eval'd worker would otherwise resolve from the cwd). */
function tsxApiUrl(): string {
  const main = createRequire(import.meta.url).resolve("tsx/esm/api"); // the CommonJS entry: dist/esm/api/index.cjs
  return pathToFileURL(main.replace(/index\.cjs$/, "index.mjs")).href;
}

function copyState(s: TrainState): WireState {
  return { params: s.params.map((a) => new Float32Array(a)), m: s.m.map((a) => new Float32Array(a)), v: s.v.map((a) => new Float32Array(a)), step: s.step, fitStartStep: s.fitStartStep };
}

function positiveInt(name: string, x: number | undefined, fallback: number | undefined): number | undefined {
  const v = x ?? fallback;
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new LoraportError("E_CONFIG", `${name}: expected a positive integer, got ${v}`);
  return v;
}

export class Trainer {
  readonly dir: string;
  readonly manifest: TrainManifest;
  readonly provider: ExecutionProvider;
  /** Why CUDA was not used, when it was asked for and is unavailable. */
  readonly providerNote: string | undefined;
  #state: TrainState;
  /** A checkpoint's interrupted fit continues on the next `fit`; a fresh fit starts at the current step. */
  #resumeFit: boolean;
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve(r: WorkerResponse & { ok: true }): void; reject(e: Error): void; onEvent?: (e: WorkerMessage) => void }>();
  #nextId = 1;
  #closed = false;
  #fitting = false;

  private constructor(dir: string, manifest: TrainManifest, state: TrainState, resumeFit: boolean, worker: Worker, provider: ExecutionProvider, note: string | undefined) {
    this.dir = dir;
    this.manifest = manifest;
    this.#state = state;
    this.#resumeFit = resumeFit;
    this.#worker = worker;
    this.provider = provider;
    this.providerNote = note;
    worker.on("message", (msg: WorkerMessage) => {
      const p = this.#pending.get(msg.id);
      if (!p) return;
      if (msg.type !== "result") return p.onEvent?.(msg);
      this.#pending.delete(msg.id);
      if (this.#pending.size === 0) worker.unref(); // an idle trainer does not keep the process alive
      if (msg.ok) p.resolve(msg);
      else {
        const err = msg.code ? new LoraportError(msg.code, msg.error) : new RuntimeError(`training worker: ${msg.error}`);
        p.reject(err);
      }
    });
    worker.on("error", (err) => this.#failAll(new RuntimeError(`training worker crashed: ${err.message}`)));
    worker.on("exit", (code) => {
      this.#closed = true;
      if (this.#pending.size) this.#failAll(new RuntimeError(`training worker exited (code ${code})`));
    });
  }

  /** Load an artifact folder (and optionally a checkpoint); the initial adapter gives the starting params. */
  static async load(dir: string, options: TrainerOptions = {}): Promise<Trainer> {
    const manifest = readTrainManifest(dir);
    const state = options.checkpoint ? await readCheckpoint(options.checkpoint, manifest.params) : freshState(await readInitialParams(dir, manifest));
    const choice = chooseProviders(options.executionProviders ?? "auto");
    const worker = startWorker();
    worker.unref();
    const trainer = new Trainer(dir, manifest, state, options.checkpoint !== undefined, worker, choice.providers[0] ?? "cpu", choice.note);
    try {
      await trainer.#request({ id: 0, op: "init", dir, providers: choice.providers, intraOpNumThreads: options.intraOpNumThreads });
    } catch (err) {
      await worker.terminate();
      throw err;
    }
    return trainer;
  }

  /** Optimizer steps taken so far. */
  get step(): number {
    return this.#state.step;
  }

  /** The current LoRA params by PEFT key (copies). */
  params(): Map<string, Tensor> {
    return new Map(this.manifest.params.map((info, i) => [info.key, tensor("F32", info.shape, new Float32Array(this.#state.params[i]!))]));
  }

  #limits(): DataLimits {
    const b = this.manifest.base;
    return { task: this.manifest.task, vocabSize: b.vocab_size, numLabels: b.num_labels, maxPositions: b.max_positions };
  }

  #check(data: readonly TrainExample[], what: string): void {
    if (!Array.isArray(data) || data.length === 0) throw new LoraportError("E_DATA", `${what}: expected a non-empty list of examples`);
    const limits = this.#limits();
    data.forEach((ex, i) => checkExample(ex, limits, `${what}[${i}]`));
  }

  async fit(data: readonly TrainExample[], options: FitOptions = {}): Promise<FitResult> {
    if (this.#fitting) throw new LoraportError("E_BUSY", "fit: this trainer is already training");
    this.#check(data, "data");
    if (options.evalData) this.#check(options.evalData, "evalData");
    const o: WireFitOptions = {
      epochs: positiveInt("epochs", options.epochs, 1)!,
      maxSteps: positiveInt("maxSteps", options.maxSteps, undefined),
      batchSize: positiveInt("batchSize", options.batchSize, 8)!,
      lr: options.lr ?? 1e-3,
      lrSchedule: options.lrSchedule ?? { kind: "constant" },
      gradientAccumulation: positiveInt("gradientAccumulation", options.gradientAccumulation, 1)!,
      evalEvery: positiveInt("evalEvery", options.evalEvery, undefined),
      evalBatchSize: positiveInt("evalBatchSize", options.evalBatchSize, options.batchSize ?? 8)!,
      checkpointEvery: positiveInt("checkpointEvery", options.checkpointEvery, undefined),
      checkpointPath: options.checkpointPath,
      shuffle: options.shuffle ?? true,
      seed: options.seed ?? 0,
    };
    if (!(o.lr >= 0) || !Number.isFinite(o.lr)) throw new LoraportError("E_CONFIG", `lr: expected a finite non-negative number, got ${o.lr}`);
    if (o.checkpointEvery && !o.checkpointPath) throw new LoraportError("E_CONFIG", "checkpointEvery needs checkpointPath");
    if (options.signal?.aborted) throw new CancelledError("fit cancelled before it started");
    if (!this.#resumeFit) this.#state.fitStartStep = this.#state.step;
    this.#resumeFit = false;
    const plan = planFit(data.length, o);
    const abort = new SharedArrayBuffer(4);
    const flag = new Int32Array(abort);
    const onAbort = (): void => void Atomics.store(flag, 0, 1);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const history: StepRecord[] = [];
    const evals: { step: number; loss: number }[] = [];
    this.#fitting = true;
    try {
      const res = await this.#request(
        { id: 0, op: "fit", state: copyState(this.#state), data, evalData: options.evalData, options: o, abort },
        (e) => {
          if (e.type === "step") {
            history.push(e.record);
            const done = e.record.step - this.#state.fitStartStep;
            options.onProgress?.({ ...e.record, totalSteps: e.totalSteps, phase: "train", done, total: e.totalSteps, unit: "steps", message: `loss ${e.record.loss.toFixed(4)}` });
          } else if (e.type === "eval") {
            evals.push({ step: e.step, loss: e.loss });
            options.onEval?.({ step: e.step, loss: e.loss });
          }
        },
      );
      if (res.state) this.#state = { ...res.state };
      if (res.aborted) {
        this.#resumeFit = true; // a later fit with the same data and options continues this one
        throw new CancelledError(`fit cancelled after step ${this.#state.step} of ${this.#state.fitStartStep + plan.totalSteps}`);
      }
      return { steps: history.length, history, evals, finalLoss: history.at(-1)?.loss ?? Number.NaN };
    } finally {
      this.#fitting = false;
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Mean loss over `data` with the current params (eval.onnx). */
  async evaluate(data: readonly TrainExample[], options: { batchSize?: number } = {}): Promise<number> {
    this.#check(data, "data");
    const res = await this.#request({ id: 0, op: "evaluate", params: copyState(this.#state).params, data, batchSize: positiveInt("batchSize", options.batchSize, 8)! });
    return res.loss!;
  }

  /** Logits of the adapted model for one padded batch (forward.onnx), `[batch, seq, vocab]` or `[batch, labels]`. */
  async forward(data: readonly TrainExample[]): Promise<Tensor> {
    this.#check(data.map((d) => ({ ...d, labels: this.manifest.task === "seq-cls" ? 0 : d.input_ids.map(() => -100) })), "data");
    const res = await this.#request({ id: 0, op: "forward", params: copyState(this.#state).params, data: data.map(({ input_ids, attention_mask }) => ({ input_ids, ...(attention_mask ? { attention_mask } : {}) })) });
    return tensor("F32", res.logits!.dims, res.logits!.data);
  }

  /** Write the current state as a checkpoint (atomic). */
  async saveCheckpoint(path: string): Promise<void> {
    await writeCheckpoint(path, this.manifest.params, this.#state);
  }

  /**
   * Write the trained adapter as a PEFT folder: the initial adapter's `adapter_config.json` (unchanged: same
   * targets, r, alpha) and `adapter_model.safetensors` with the current params under PEFT's keys.
   */
  async saveAdapter(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const configSrc = join(this.dir, this.manifest.adapter.folder, "adapter_config.json");
    const config = await readFile(configSrc);
    await writeFileAtomic(join(dir, "adapter_config.json"), async (fh) => void (await writeAll(fh, config, 0)));
    await writeSafetensors(join(dir, "adapter_model.safetensors"), this.params(), { format: "pt" });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#request({ id: 0, op: "close" }).catch(() => {});
    this.#closed = true;
    await this.#worker.terminate();
  }

  /** `await using t = await Trainer.load(...)`: the worker thread ends at scope end (it keeps Node alive). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #failAll(err: Error): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  #request(req: WorkerRequest, onEvent?: (e: WorkerMessage) => void): Promise<WorkerResponse & { ok: true }> {
    if (this.#closed) return Promise.reject(new RuntimeError("trainer is closed"));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, ...(onEvent ? { onEvent } : {}) });
      this.#worker.ref();
      this.#worker.postMessage({ ...req, id });
    });
  }
}

/** The initial adapter's tensors, in manifest order, checked against the manifest. */
async function readInitialParams(dir: string, manifest: TrainManifest): Promise<Float32Array[]> {
  const file = join(dir, manifest.adapter.folder, "adapter_model.safetensors");
  const { tensors } = await readSafetensors(file);
  return manifest.params.map((info) => {
    const t = tensors.get(info.key);
    if (!t) throw new FormatError(file, `tensor '${info.key}' missing (listed in the manifest's params)`);
    if (t.dtype !== "F32" || t.shape.join(",") !== info.shape.join(",")) {
      throw new FormatError(file, `tensor '${info.key}': expected F32 [${info.shape.join(", ")}], got ${t.dtype} [${t.shape.join(", ")}]`);
    }
    return new Float32Array(t.data as Float32Array);
  });
}

