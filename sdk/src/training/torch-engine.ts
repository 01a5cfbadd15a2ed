/**
 * `engine: "torch"`: the same fit as the ORT engine, run by PEFT + torch.distributed (DDP or FSDP2, gloo on CPU)
 * under torchrun, started by the sidecar package's launcher
 * (`python -m loraport_sidecar.train_torch.launch`). TypeScript writes the token ids (text already tokenized here)
 * and a run config into a run folder, then reads the launcher's JSON-line events (rank 0's progress) from its
 * stdout. `batchSize` is the global batch: each of N ranks takes batchSize / N rows of every micro-batch, so any
 * N trains the same adapter; data order, schedule and loss are the ORT engine's.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CancelledError, DistributedTrainingError, FormatError, LoraportError, RuntimeError } from "../errors.js";
import { resolveModelPath } from "../hub/resolve-model.js";
import { choosePython, packageRoot } from "../bridge/internal/process.js";
import { checkExample, type DataLimits, type TrainExample } from "./data.js";
import type { TrainTask } from "./manifest.js";
import type { FitOptions, FitResult } from "./trainer.js";
import type { StepRecord } from "./worker-protocol.js";

export type TorchStrategy = "ddp" | "fsdp";

export interface TorchLoraConfig {
  readonly r?: number;
  readonly alpha?: number;
  /** Module names to adapt (default: PEFT's per-architecture default). */
  readonly targetModules?: readonly string[];
  /** rsLoRA scaling alpha / √r instead of alpha / r. */
  readonly rslora?: boolean;
  /** LoRA dropout; > 0 trains in train mode (the base model's own dropouts too), so not bit-equal to the ORT engine. */
  readonly dropout?: number;
}

export interface TorchTrainerOptions {
  /** A Hugging Face model folder, or a seeded tiny model of the sidecar (`{ builtin: "gpt2" }`, for tests). */
  readonly base: string | { readonly builtin: string; readonly config?: Readonly<Record<string, unknown>> };
  /** Start from this PEFT adapter folder (its config wins over `lora`); default: PEFT's init of `lora`. */
  readonly adapter?: string;
  readonly lora?: TorchLoraConfig;
  readonly task?: TrainTask;
  /** Ranks on this node (torchrun --nproc-per-node), default 1. */
  readonly nprocPerNode?: number;
  readonly nnodes?: number;
  readonly nodeRank?: number;
  /** host:port of the rendezvous (torchrun --rdzv-endpoint), needed for more than one node. */
  readonly rdzvEndpoint?: string;
  readonly strategy?: TorchStrategy;
  /** Resume the fit this checkpoint (of either engine) was written by. */
  readonly checkpoint?: string;
  /** Python interpreter (default `$LORAPORT_PYTHON`, else the project's .venv). */
  readonly python?: string;
  /** Where the run's files go (data, config, events, torchrun's log); default a temp folder removed on close. */
  readonly workDir?: string;
}

export interface TorchFitOptions extends FitOptions {
  /** Clip the global gradient norm to this before each AdamW step (torch engine only). */
  readonly maxGradNorm?: number;
}

interface LaunchEvent {
  readonly type: "start" | "step" | "checkpoint" | "done" | "error";
  readonly [k: string]: unknown;
}

function positiveInt(name: string, x: number | undefined, fallback: number | undefined): number | undefined {
  const v = x ?? fallback;
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new LoraportError("E_CONFIG", `${name}: expected a positive integer, got ${v}`);
  return v;
}

/** Vocabulary and context of a model folder (config.json), for checking examples before any process starts. */
function folderLimits(base: string, task: TrainTask): DataLimits | undefined {
  const file = join(base, "config.json");
  if (!existsSync(file)) throw new FormatError(file, "no such file (expected a Hugging Face model folder)");
  const c = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  const vocab = c["vocab_size"];
  if (typeof vocab !== "number") return undefined;
  const pos = (c["n_positions"] ?? c["max_position_embeddings"]) as number | undefined;
  const labels = c["num_labels"] ?? (c["id2label"] ? Object.keys(c["id2label"] as object).length : undefined);
  return { task, vocabSize: vocab, numLabels: typeof labels === "number" ? labels : null, maxPositions: typeof pos === "number" ? pos : null };
}

export class TorchTrainer {
  readonly options: TorchTrainerOptions;
  readonly worldSize: number;
  readonly #python: string;
  readonly #dir: string;
  readonly #ownDir: boolean;
  #adapterDir: string | undefined;
  #peakRss: number[] | undefined;
  #step = 0;
  #used = false;
  #closed = false;

  private constructor(options: TorchTrainerOptions, python: string, dir: string, ownDir: boolean) {
    this.options = options;
    this.#python = python;
    this.#dir = dir;
    this.#ownDir = ownDir;
    this.worldSize = (options.nprocPerNode ?? 1) * (options.nnodes ?? 1);
  }

  static async load(options: TorchTrainerOptions): Promise<TorchTrainer> {
    if (typeof options.base === "string") options = { ...options, base: await resolveModelPath(options.base, { argument: "base" }) };
    positiveInt("nprocPerNode", options.nprocPerNode, 1);
    positiveInt("nnodes", options.nnodes, 1);
    if (options.strategy !== undefined && options.strategy !== "ddp" && options.strategy !== "fsdp") {
      throw new LoraportError("E_CONFIG", `strategy: expected "ddp" or "fsdp", got ${JSON.stringify(options.strategy)}`);
    }
    if ((options.nnodes ?? 1) > 1 && !options.rdzvEndpoint) throw new LoraportError("E_CONFIG", `rdzvEndpoint: ${options.nnodes} nodes need the rendezvous host:port (node 0)`);
    if (typeof options.base === "string" && !existsSync(join(options.base, "config.json"))) {
      throw new FormatError(join(options.base, "config.json"), "no such file (base: expected a Hugging Face model folder)");
    }
    if (options.checkpoint && !existsSync(options.checkpoint)) throw new LoraportError("E_CONFIG", `checkpoint: ${options.checkpoint}: no such file`);
    const python = choosePython(options.python, packageRoot()).python;
    const dir = options.workDir ? resolve(options.workDir) : await mkdtemp(join(tmpdir(), "loraport-torch-train-"));
    await mkdir(dir, { recursive: true });
    return new TorchTrainer(options, python, dir, !options.workDir);
  }

  /** Optimizer steps taken (after a fit: the checkpoint's step plus this fit's). */
  get step(): number {
    return this.#step;
  }

  /** Each rank's peak resident memory (MiB) in the last finished fit. */
  get peakRssMiB(): readonly number[] | undefined {
    return this.#peakRss;
  }

  /** The run folder (config, data, events, `events.jsonl.torchrun.log`). */
  get runDir(): string {
    return this.#dir;
  }

  async fit(data: readonly TrainExample[], options: TorchFitOptions = {}): Promise<FitResult> {
    if (this.#closed) throw new RuntimeError("trainer is closed");
    if (this.#used) throw new LoraportError("E_BUSY", "fit: a torch-engine trainer runs one fit; load a new one with { checkpoint } to continue from a checkpoint");
    const o = this.options;
    const task = o.task ?? "causal-lm";
    const limits = typeof o.base === "string" ? folderLimits(o.base, task) : undefined;
    if (limits) data.forEach((ex, i) => checkExample(ex, limits, `data[${i}]`));
    const batchSize = positiveInt("batchSize", options.batchSize, 8)!;
    if (batchSize % this.worldSize !== 0) {
      throw new LoraportError("E_CONFIG", `batchSize: ${batchSize} is the global batch and must divide evenly over the ${this.worldSize} ranks; give a multiple of ${this.worldSize}`);
    }
    if (options.evalData || options.evalEvery) throw new LoraportError("E_CONFIG", "evalData / evalEvery: not supported by the torch engine yet (evaluate with the ORT engine or PEFT)");
    if (options.checkpointEvery && !options.checkpointPath) throw new LoraportError("E_CONFIG", "checkpointEvery needs checkpointPath");
    if (options.signal?.aborted) throw new CancelledError("fit cancelled before it started");
    this.#used = true;
    const dataFile = join(this.#dir, "data.jsonl");
    await writeFile(dataFile, data.map((e) => JSON.stringify(e)).join("\n") + "\n");
    const out = join(this.#dir, "adapter");
    const config = {
      out, data: dataFile, events: join(this.#dir, "events.jsonl"),
      ...(typeof o.base === "string" ? { base: resolve(o.base) } : { builtin: o.base.builtin, builtinConfig: o.base.config ?? {} }),
      ...(o.adapter ? { adapter: resolve(o.adapter) } : {}),
      ...(o.task ? { task: o.task } : {}),
      lora: { ...o.lora },
      fit: {
        epochs: positiveInt("epochs", options.epochs, 1), maxSteps: positiveInt("maxSteps", options.maxSteps, undefined) ?? null, batchSize,
        lr: options.lr ?? 1e-3, lrSchedule: options.lrSchedule ?? { kind: "constant" },
        gradientAccumulation: positiveInt("gradientAccumulation", options.gradientAccumulation, 1),
        maxGradNorm: options.maxGradNorm ?? null, shuffle: options.shuffle ?? true, seed: options.seed ?? 0,
      },
      checkpoint: {
        ...(options.checkpointPath ? { path: resolve(options.checkpointPath), every: options.checkpointEvery ?? Number.MAX_SAFE_INTEGER } : {}),
        ...(o.checkpoint ? { resumeFrom: resolve(o.checkpoint) } : {}),
      },
      distributed: { nprocPerNode: o.nprocPerNode ?? 1, nnodes: o.nnodes ?? 1, nodeRank: o.nodeRank ?? null, rdzvEndpoint: o.rdzvEndpoint ?? null, strategy: o.strategy ?? "ddp" },
    };
    const configFile = join(this.#dir, "run.json");
    await writeFile(configFile, JSON.stringify(config, null, 2));
    const res = await this.#launch(configFile, options);
    this.#adapterDir = out;
    return res;
  }

  #launch(configFile: string, options: FitOptions): Promise<FitResult> {
    const root = packageRoot();
    const sidecar = join(root, "sidecar");
    const env = { ...process.env, PYTHONPATH: [sidecar, process.env["PYTHONPATH"]].filter(Boolean).join(":"), PYTHONUNBUFFERED: "1", HF_HUB_OFFLINE: process.env["HF_HUB_OFFLINE"] ?? "1" };
    const child = spawn(this.#python, ["-m", "loraport_sidecar.train_torch.launch", configFile], { cwd: sidecar, env, stdio: ["ignore", "pipe", "pipe"] });
    const history: StepRecord[] = [];
    let stderr = "";
    let total = 0;
    let startStep = 0;
    let final: LaunchEvent | undefined;
    child.stderr.on("data", (b: Buffer) => void (stderr = (stderr + b.toString()).slice(-4000)));
    // SIGTERM lets the launcher stop torchrun and its ranks; it then reports E_CANCELLED.
    const onAbort = (): void => void child.kill("SIGTERM");
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      let ev: LaunchEvent;
      try {
        ev = JSON.parse(line) as LaunchEvent;
      } catch {
        return; // not an event (a stray print)
      }
      if (ev.type === "start") {
        total = ev["totalSteps"] as number;
        startStep = ev["fitStartStep"] as number;
      } else if (ev.type === "step") {
        const rec: StepRecord = {
          step: ev["step"] as number, epoch: ev["epoch"] as number, loss: ev["loss"] as number, lr: ev["lr"] as number,
          tokensPerSecond: ev["tokensPerSecond"] as number, stepMs: ev["stepMs"] as number, worldSize: ev["worldSize"] as number,
        };
        history.push(rec);
        this.#step = rec.step;
        const done = rec.step - startStep;
        options.onProgress?.({ ...rec, totalSteps: total, phase: "train", done, total, unit: "steps", message: `loss ${rec.loss.toFixed(4)}` });
      } else if (ev.type === "done" || ev.type === "error") {
        final = ev;
      }
    });
    return new Promise((resolvePromise, reject) => {
      child.on("error", (err) => reject(new RuntimeError(`cannot start ${this.#python}: ${err.message}`, { cause: err })));
      child.on("close", (code, signal) => {
        options.signal?.removeEventListener("abort", onAbort);
        if (final?.type === "done") {
          if (Array.isArray(final["peakRssMiB"])) this.#peakRss = final["peakRssMiB"] as number[];
          resolvePromise({ steps: history.length, history, evals: [], finalLoss: history.at(-1)?.loss ?? Number.NaN });
          return;
        }
        if (final?.type === "error") {
          const msg = String(final["message"]);
          const c = String(final["code"]);
          if (c === "E_CANCELLED") reject(new CancelledError(msg));
          else if (c === "E_WORKER_FAILED") reject(new DistributedTrainingError(msg, typeof final["rank"] === "number" ? final["rank"] : undefined));
          else reject(new LoraportError(c, msg));
          return;
        }
        if (options.signal?.aborted) {
          reject(new CancelledError(`training stopped after step ${this.#step}`));
          return;
        }
        const tail = stderr.trim().split("\n").slice(-3).join(" | ");
        reject(new DistributedTrainingError(`the torch-engine launcher exited (${signal ?? `code ${code}`}) without a result${tail ? `: ${tail}` : ""} (run folder: ${this.#dir})`));
      });
    });
  }

  /** Copy the trained PEFT folder (written atomically by rank 0) to `dir`. */
  async saveAdapter(dir: string): Promise<void> {
    if (!this.#adapterDir) throw new LoraportError("E_STATE", "saveAdapter: no fit has finished on this trainer");
    await mkdir(dir, { recursive: true });
    for (const name of await readdir(this.#adapterDir)) {
      const tmp = join(dir, `.${name}.tmp-${process.pid}`);
      await copyFile(join(this.#adapterDir, name), tmp);
      await rename(tmp, join(dir, name));
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownDir) await rm(this.#dir, { recursive: true, force: true });
  }

  /** `await using t = await TorchTrainer.load(...)`: closed at scope end. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
