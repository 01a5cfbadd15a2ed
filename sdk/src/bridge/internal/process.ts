/**
 * The sidecar process: spawned with execa, configured by one JSON line on stdin (keys never appear on the
 * command line), READY line on stdout, stderr kept as a tail for error messages. stdin stays open as the
 * lifeline: closing it asks the sidecar to exit; the sidecar also exits when this process dies.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ChildProcess } from "node:child_process";
import { execa } from "execa";
import { SidecarEnvironmentError, SidecarExitedError } from "../../errors.js";
import { packageRoot } from "../../internal/package-root.js";

const STDERR_TAIL_BYTES = 8192;

/** Re-exported for the modules that locate the sidecar package. */
export { packageRoot };

export function defaultPython(root: string): string {
  return choosePython(undefined, root).python;
}

/** The interpreter to run and, for error messages, where that choice came from. */
export interface PythonChoice {
  readonly python: string;
  readonly source: string;
}

/** What makes the environment: `npm run setup` in a clone; an npm-installed loraport (no set-up script) has `npx loraport setup-python`. */
function setupCommand(root: string): string {
  return root.split(/[\\/]/).includes("node_modules") ? "`npx loraport setup-python`" : `\`npm run setup\` (in ${root})`;
}

/** `explicit` (the `python` option), else `$LORAPORT_PYTHON`, else the project's `.venv` (which must exist). */
export function choosePython(explicit: string | undefined, root: string): PythonChoice {
  if (explicit) return { python: explicit, source: "the python option" };
  const env = process.env["LORAPORT_PYTHON"];
  if (env) return { python: env, source: "$LORAPORT_PYTHON" };
  const venv = process.platform === "win32" ? join(root, ".venv", "Scripts", "python.exe") : join(root, ".venv", "bin", "python");
  if (!existsSync(venv)) {
    throw new SidecarEnvironmentError(
      `the sidecar's Python environment ${venv} does not exist: ${setupCommand(root)} makes it; or pass { python } / set LORAPORT_PYTHON to an interpreter that has sidecar/requirements.txt installed`,
      venv, undefined, {});
  }
  return { python: venv, source: `the project's environment (${join(root, ".venv")})` };
}

/**
 * What a failed start says when the interpreter itself is the problem: it does not exist, or it lacks a package
 * the sidecar imports (raw Python would print a `ModuleNotFoundError` traceback). Undefined for other failures.
 */
export function environmentProblem(choice: PythonChoice, root: string, spawnError: string | undefined, info: ExitInfo | undefined): SidecarEnvironmentError | undefined {
  const fix = `${setupCommand(root)} makes the sidecar's environment in ${join(root, ".venv")}; or pass { python } / set LORAPORT_PYTHON to an interpreter with sidecar/requirements.txt installed`;
  const tried = `${choice.python} (from ${choice.source})`;
  if (spawnError !== undefined && /ENOENT|EACCES/.test(spawnError)) {
    return new SidecarEnvironmentError(`cannot run the sidecar's Python: ${tried} ${/EACCES/.test(spawnError) ? "is not executable" : "does not exist"}. ${fix}`, choice.python, undefined, {});
  }
  const tail = info?.stderrTail ?? "";
  const missing = /ModuleNotFoundError: No module named '([^']+)'/.exec(tail);
  if (missing) {
    const mod = missing[1]!;
    return new SidecarEnvironmentError(
      `the Python environment tried for the sidecar, ${tried}, has no module '${mod}' (the sidecar needs pyzmq, msgpack, torch and the rest of sidecar/requirements.txt). ${fix}`,
      choice.python, mod.split(".")[0], info ?? {});
  }
  return undefined;
}

export interface ExitInfo {
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly stderrTail: string;
}

export interface ReadyLine {
  readonly ready: true;
  readonly pid: number;
  readonly endpoints: { readonly control: string; readonly bulk?: string };
}

export interface SpawnOptions {
  readonly python: string;
  /** Where `python` came from, for the message when it cannot run the sidecar. */
  readonly pythonSource: string;
  readonly root: string;
  readonly config: Record<string, unknown>;
  readonly env: Readonly<Record<string, string>>;
  readonly startTimeoutMs: number;
  readonly forceKillAfterMs: number;
  readonly onStderr: ((text: string) => void) | undefined;
}

export class SidecarProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  private stderrTail = "";
  private exitInfo: ExitInfo | undefined;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.exited = new Promise((resolveExit) => {
      // "exit" fires as soon as the process is gone; stderr may still be draining, so give it a moment.
      child.once("exit", (code, signal) => {
        const finish = () => {
          this.exitInfo ??= { exitCode: code ?? undefined, signal: signal ?? undefined, stderrTail: this.stderrTail };
          resolveExit(this.exitInfo);
        };
        const t = setTimeout(finish, 100);
        child.once("close", () => {
          clearTimeout(t);
          finish();
        });
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  get stderr(): string {
    return this.stderrTail;
  }

  static async spawn(opts: SpawnOptions): Promise<{ proc: SidecarProcess; ready: ReadyLine }> {
    const pythonPath = [join(opts.root, "sidecar"), process.env["PYTHONPATH"]].filter(Boolean).join(process.platform === "win32" ? ";" : ":");
    // Keep the user's other glibc tunables; add huge pages unless they chose otherwise.
    const tunables = process.env["GLIBC_TUNABLES"];
    const glibcTunables = !tunables ? "glibc.malloc.hugetlb=1" : tunables.includes("glibc.malloc.hugetlb") ? tunables : `${tunables}:glibc.malloc.hugetlb=1`;
    const child = execa(opts.python, ["-m", "loraport_sidecar"], {
      stdin: "pipe", stdout: "pipe", stderr: "pipe", buffer: false, reject: false,
      cleanup: true, forceKillAfterDelay: opts.forceKillAfterMs, cwd: opts.root,
      env: {
        // Fresh receive buffers are page-fault bound; huge pages double large-tensor throughput (bridge notes §1.4).
        GLIBC_TUNABLES: glibcTunables,
        PYTHONUNBUFFERED: "1", PYTHONPATH: pythonPath, LORAPORT_SCHEMAS_DIR: join(opts.root, "schemas"),
        TRANSFORMERS_VERBOSITY: "error", HF_HUB_OFFLINE: "1", ...opts.env,
      },
    });
    child.catch(() => {}); // reject: false; this only silences a spawn failure, which readReady reports
    const proc = new SidecarProcess(child);
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      proc.stderrTail = (proc.stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
      opts.onStderr?.(chunk);
    });
    child.stdin?.on("error", () => {}); // EPIPE when the sidecar is already gone: its exit is reported instead
    child.stdin?.write(`${JSON.stringify(opts.config)}\n`);
    const ready = await proc.readReady(opts.startTimeoutMs, { python: opts.python, source: opts.pythonSource }, opts.root);
    return { proc, ready };
  }

  private readReady(timeoutMs: number, choice: PythonChoice, root: string): Promise<ReadyLine> {
    const python = choice.python;
    const out = this.child.stdout!;
    out.setEncoding("utf8");
    return new Promise<ReadyLine>((resolveReady, rejectReady) => {
      let buf = "";
      const fail = (why: string, info?: ExitInfo, spawnError?: string) => {
        cleanup();
        const i = info ?? { exitCode: undefined, signal: undefined, stderrTail: this.stderrTail };
        const env = environmentProblem(choice, root, spawnError, i);
        if (env) {
          rejectReady(env);
          return;
        }
        rejectReady(new SidecarExitedError(`sidecar (${python}) ${why}${i.stderrTail ? `; stderr: ${i.stderrTail.trim().split("\n").slice(-5).join(" | ")}` : ""}`, i.exitCode, i.signal, i.stderrTail));
      };
      const onData = (chunk: string) => {
        buf += chunk;
        const nl = buf.indexOf("\n");
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        try {
          const doc = JSON.parse(line) as ReadyLine;
          if (doc.ready !== true) throw new Error("not a READY line");
          cleanup();
          out.resume(); // later stdout (prints from user code) is drained and dropped
          resolveReady(doc);
        } catch {
          fail(`printed ${JSON.stringify(line.slice(0, 200))} instead of its READY line`);
          this.kill();
        }
      };
      const timer = setTimeout(() => {
        fail(`did not report READY within ${timeoutMs} ms`);
        this.kill();
      }, timeoutMs);
      const onExit = (info: ExitInfo) => fail(`exited before READY (code ${info.exitCode ?? "none"}, signal ${info.signal ?? "none"})`, info);
      const cleanup = () => {
        clearTimeout(timer);
        out.off("data", onData);
      };
      out.on("data", onData);
      this.exited.then(onExit, () => {});
      this.child.once("error", (e) => fail(`could not start: ${e.message}`, undefined, e.message));
    });
  }

  /** Close the lifeline: the sidecar shuts down on stdin EOF. */
  endStdin(): void {
    this.child.stdin?.end();
  }

  /** SIGTERM now, SIGKILL after forceKillAfterDelay (execa). */
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.exitInfo === undefined) this.child.kill(signal);
  }

  /** Ask nicely (stdin EOF), then SIGTERM after `graceMs`, then SIGKILL (execa's forceKillAfterDelay). */
  async stop(graceMs: number): Promise<ExitInfo> {
    this.endStdin();
    const t = setTimeout(() => this.kill("SIGTERM"), graceMs);
    const info = await this.exited;
    clearTimeout(t);
    return info;
  }
}

export function resolveRoot(explicit: string | undefined): string {
  return explicit ? resolve(explicit) : packageRoot();
}
