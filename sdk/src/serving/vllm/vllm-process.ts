/**
 * A vLLM OpenAI-compatible server started as a child process (`python -m vllm.entrypoints.openai.api_server`) on
 * 127.0.0.1, with runtime LoRA updating on; ready when `/health` answers 200. A server that exits before it is ready
 * fails with its stderr's tail. It runs in its own process group (vLLM starts engine processes of its own): stopping
 * sends SIGTERM to the group, then SIGKILL after a grace period; the group is killed too if this process exits.
 */
import { existsSync, readlinkSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import { FileMissingError, RuntimeError } from "../../errors.js";
import { packageRoot } from "../../internal/package-root.js";
import type { ProgressCallback } from "../../progress.js";

export interface VllmLaunchOptions {
  /** The Hugging Face model folder (or Hub id) vLLM serves as the base. */
  readonly model: string;
  /** vLLM's interpreter: default `$LORAPORT_VLLM_PYTHON`, else `<package root>/.venv-vllm/bin/python` (made by `npm run setup`). */
  readonly python?: string;
  /** Port on 127.0.0.1 (default: a free one). */
  readonly port?: number;
  /** `--served-model-name` (default: the folder's name as vLLM gives it). */
  readonly servedModelName?: string;
  /** `--max-lora-rank` (default 16), `--max-loras` (default 4), `--max-cpu-loras` (default 16). */
  readonly maxLoraRank?: number;
  readonly maxLoras?: number;
  readonly maxCpuLoras?: number;
  /** More arguments for vLLM, e.g. `["--tensor-parallel-size", "2"]` on a multi-GPU machine. */
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** How long start-up may take (default 15 minutes: vLLM's CPU build takes minutes on a small machine). */
  readonly startTimeoutMs?: number;
  readonly onProgress?: ProgressCallback;
}

export function defaultVllmPython(): string {
  const env = process.env["LORAPORT_VLLM_PYTHON"];
  if (env) return env;
  const venv = join(packageRoot(), ".venv-vllm", "bin", "python");
  if (!existsSync(venv)) throw new FileMissingError(venv, `${venv}: vLLM's Python environment is missing; run \`npm run setup\` (it makes .venv-vllm), or set LORAPORT_VLLM_PYTHON`);
  return venv;
}

/** vLLM prints "see root cause above": the first error lines of its log, then its last line. */
function rootCause(log: string): string {
  const lines = log.trim().split("\n");
  const first = lines.findIndex((l) => /Error|Exception|Traceback|error:/.test(l) && !/WARNING/.test(l));
  const cause = first >= 0 ? lines.slice(first, first + 12).filter((l) => !/^\s+(File|\^)/.test(l)).slice(0, 6) : [];
  return [...cause, lines.at(-1) ?? ""].map((l) => l.trim()).join(" | ");
}

/**
 * True when /proc belongs to another PID namespace than this process (some CI sandboxes: a new PID namespace with the
 * host's /proc). vLLM's engine core reads /proc/<its pid>/status and dies there, so it then gets a PID namespace and a
 * /proc of its own (`unshare --pid --fork --mount-proc`, which needs root).
 */
function procIsForeign(): boolean {
  try {
    return readlinkSync("/proc/self") !== String(process.pid);
  } catch {
    return false;
  }
}

/** How to run vLLM: as is, or inside its own PID namespace when /proc is foreign and this process may make one. */
function launcher(python: string, args: readonly string[]): [string, string[]] {
  const canUnshare = process.platform === "linux" && process.getuid?.() === 0 && existsSync("/usr/bin/unshare");
  if (procIsForeign() && canUnshare) return ["/usr/bin/unshare", ["--pid", "--fork", "--mount-proc", "--kill-child", python, ...args]];
  return [python, [...args]];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export class VllmProcess {
  readonly url: string;
  readonly #child: ChildProcess;
  readonly #exit: Promise<void>;
  readonly #onExit: () => void;
  #log = "";
  #exited = false;

  private constructor(url: string, child: ChildProcess) {
    this.url = url;
    this.#child = child;
    const keep = (d: Buffer): void => void (this.#log = (this.#log + d.toString()).slice(-65536));
    child.stderr?.on("data", keep);
    child.stdout?.on("data", keep);
    this.#exit = new Promise((resolve) => child.once("exit", () => resolve()));
    void this.#exit.then(() => (this.#exited = true));
    // Never leave a vLLM server (and its engine processes) behind this process.
    this.#onExit = () => this.#signal("SIGKILL");
    process.once("exit", this.#onExit);
  }

  static async start(options: VllmLaunchOptions): Promise<VllmProcess> {
    const python = options.python ?? defaultVllmPython();
    const port = options.port ?? (await freePort());
    const args = [
      "-m", "vllm.entrypoints.openai.api_server", "--model", options.model, "--host", "127.0.0.1", "--port", String(port),
      "--enable-lora", "--max-lora-rank", String(options.maxLoraRank ?? 16), "--max-loras", String(options.maxLoras ?? 4), "--max-cpu-loras", String(options.maxCpuLoras ?? 16),
      ...(options.servedModelName ? ["--served-model-name", options.servedModelName] : []),
      ...(options.args ?? []),
    ];
    const [command, argv] = launcher(python, args);
    const child = spawn(command, argv, {
      env: { ...process.env, VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True", ...options.env }, stdio: ["ignore", "pipe", "pipe"], detached: true,
    });
    const proc = new VllmProcess(`http://127.0.0.1:${port}`, child);
    const deadline = Date.now() + (options.startTimeoutMs ?? 900_000);
    const t0 = Date.now();
    for (let i = 0; ; i++) {
      if (proc.#exited) throw new RuntimeError(`vLLM exited before it was ready (${python} ${args.slice(0, 4).join(" ")} …): ${rootCause(proc.#log)}`);
      if (Date.now() > deadline) {
        await proc.stop();
        throw new RuntimeError(`vLLM was not ready after ${Math.round((Date.now() - t0) / 1000)} s: ${proc.#log.trim().split("\n").at(-1) ?? ""}`);
      }
      try {
        if ((await fetch(`${proc.url}/health`, { signal: AbortSignal.timeout(2000) })).ok) break;
      } catch {
        // not listening yet
      }
      options.onProgress?.({ phase: "vllm", done: 0, total: 1, unit: "servers", message: `starting vLLM (${Math.round((Date.now() - t0) / 1000)} s)` });
      await new Promise((r) => setTimeout(r, Math.min(2000, 250 * (i + 1))));
    }
    options.onProgress?.({ phase: "vllm", done: 1, total: 1, unit: "servers", message: `vLLM ready at ${proc.url}` });
    return proc;
  }

  /** The last lines vLLM printed (for error messages). */
  get logTail(): string {
    return this.#log;
  }

  #signal(sig: NodeJS.Signals): void {
    if (this.#exited || this.#child.pid === undefined) return;
    try {
      process.kill(-this.#child.pid, sig);
    } catch {
      // already gone
    }
  }

  async stop(graceMs = 15_000): Promise<void> {
    process.off("exit", this.#onExit);
    if (this.#exited) return;
    this.#signal("SIGTERM");
    const timer = setTimeout(() => this.#signal("SIGKILL"), graceMs);
    await this.#exit;
    clearTimeout(timer);
    this.#signal("SIGKILL"); // engine processes that outlived the server
  }
}
