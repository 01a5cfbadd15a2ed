/**
 * Runs the Python reference side (`python -m loraport_sidecar.conformance`), which builds the base models and
 * adapters and computes loralib's and PEFT's numbers, and reads back its manifests.
 */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { LoraportError } from "../errors.js";
import { repoRoot } from "./paths.js";
import { defaultPython } from "../bridge/internal/process.js";
import type { TrainExample } from "../training/data.js";

/** What the reference side wrote for one case (see sidecar/loraport_sidecar/conformance/run_case.py). */
export interface ReferenceManifest {
  readonly case_id: string;
  readonly out: string;
  /** File name of the reference tensors, relative to `out`. */
  readonly tensors: string;
  readonly weights: { readonly backends: readonly string[]; readonly params: readonly string[] };
  readonly forward: { readonly backends: readonly string[]; readonly batches: number; readonly select?: string };
  readonly adapters: Readonly<Record<string, string>>;
  readonly notes: readonly string[];
  readonly base_from: string;
  readonly base_model_dir?: string;
  /** ONNX exports made by the reference process for the ORT backends, by mode; or why an export failed. */
  readonly onnx?: Readonly<Record<string, string>>;
  readonly onnx_errors?: Readonly<Record<string, string>>;
  readonly lora?: { readonly r: number; readonly lora_alpha: number; readonly targets: readonly string[]; readonly enable_lora?: readonly boolean[] | null; readonly fan_in_fan_out?: boolean };
  /** Training cases: the train-step artifact, the adapter PEFT + torch AdamW trained, and the steps both run. */
  readonly train?: {
    readonly artifact: string;
    readonly reference_adapter: string;
    readonly steps: number;
    readonly lr: number;
    readonly batch_size: number;
    readonly examples: readonly TrainExample[];
  };
}

export interface ReferenceJob {
  readonly case: string;
  readonly out: string;
  readonly ts_adapter?: string;
  readonly ts_adapter_forward?: string;
  /** ONNX export modes to make for this case ("adapter-inputs", "merged"). */
  readonly onnx?: readonly string[];
  /** lora_alpha instead of the case file's (published checkpoints store none). */
  readonly lora_alpha?: number;
}

export type JobOutcome = { manifest: ReferenceManifest } | { error: { type: string; message: string; file: string | null } };

/** The sidecar environment's Python: `$LORAPORT_PYTHON`, else the project's `.venv`. */
export function pythonPath(): string {
  return defaultPython(repoRoot());
}

function spawnReference(args: readonly string[]): ChildProcessByStdio<Writable, Readable, Readable> {
  return spawn(pythonPath(), ["-m", "loraport_sidecar.conformance", ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, PYTHONWARNINGS: "ignore", TRANSFORMERS_VERBOSITY: "error", HF_HUB_OFFLINE: "1", PYTHONUNBUFFERED: "1" },
  });
}

/** Run a reference-side command to its end, handing each stdout line to `onLine`. */
function runPython(args: readonly string[], onLine: (line: string) => void, timeoutMs: number, stdin?: (w: Writable) => void): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawnReference(args);
    let buf = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-8000);
    });
    child.stdin.on("error", () => {}); // a dead child is reported by 'close' below
    if (stdin) stdin(child.stdin);
    else child.stdin.end();
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new LoraportError("E_REFERENCE", `cannot start the reference side: ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (buf.trim()) onLine(buf);
      if (code === 0) return resolvePromise();
      const tail = stderr.trim().split("\n").slice(-3).join(" | ");
      reject(new LoraportError("E_REFERENCE", `reference side (python -m loraport_sidecar.conformance ${args[0]}) ${signal ? `killed by ${signal}` : `exited ${code}`}: ${tail}`));
    });
  });
}

/**
 * One reference process for a whole run: jobs go in as JSON lines on its stdin and each resolves with its
 * outcome, so follow-up jobs (after loraport converted a generated checkpoint) pay no second start-up.
 */
export class ReferenceSession {
  readonly #pending = new Map<number, { resolve(o: JobOutcome): void }>();
  readonly #done: Promise<void>;
  #stdin: Writable | undefined;
  #next = 0;
  #failure: Error | undefined;

  constructor(opts: { referenceDir?: string; base?: string } = {}) {
    const args = ["batch", "--jobs", "-"];
    if (opts.referenceDir) args.push("--reference-dir", opts.referenceDir);
    if (opts.base) args.push("--base", opts.base);
    this.#done = runPython(args, (line) => {
      if (!line.startsWith("{")) return;
      const msg = JSON.parse(line) as { job: number } & JobOutcome;
      const p = this.#pending.get(msg.job);
      this.#pending.delete(msg.job);
      p?.resolve(msg);
    }, 60 * 60_000, (w) => (this.#stdin = w)).catch((err: unknown) => {
      this.#failure = err instanceof Error ? err : new Error(String(err));
    }).finally(() => {
      // Jobs still waiting when the process ends get its failure as their outcome.
      for (const p of this.#pending.values()) p.resolve({ error: { type: "ReferenceSideExited", message: this.#failure?.message ?? "the reference side stopped", file: null } });
      this.#pending.clear();
    });
  }

  submit(job: ReferenceJob): Promise<JobOutcome> {
    const id = this.#next++;
    return new Promise((resolvePromise) => {
      if (this.#failure || !this.#stdin) return resolvePromise({ error: { type: "ReferenceSideExited", message: this.#failure?.message ?? "the reference side is not running", file: null } });
      this.#pending.set(id, { resolve: resolvePromise });
      this.#stdin.write(`${JSON.stringify({ ...job, id })}\n`);
    });
  }

  /** No more jobs: let the process finish. */
  async close(): Promise<void> {
    this.#stdin?.end();
    await this.#done;
  }
}

/** `verify`: PEFT's numbers for a user's base folder and adapter. */
export async function runReferenceVerify(base: string, adapter: string, out: string, inputs?: string, onnx: readonly string[] = []): Promise<ReferenceManifest> {
  const args = ["verify", "--base", base, "--adapter", adapter, "--out", out];
  if (onnx.length) args.push("--onnx", onnx.join(","));
  if (inputs) args.push("--inputs", inputs);
  let last: (JobOutcome & object) | ReferenceManifest | undefined;
  await runPython(args, (line) => {
    if (line.startsWith("{")) last = JSON.parse(line) as ReferenceManifest;
  }, 60 * 60_000).catch((err: unknown) => {
    if (last && "error" in last) return; // reported below with its file
    throw err;
  });
  if (!last) throw new LoraportError("E_REFERENCE", "the reference side printed no result");
  if ("error" in last) throw new LoraportError("E_REFERENCE", last.error.message);
  return last as ReferenceManifest;
}
