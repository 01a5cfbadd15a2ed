/**
 * The fuzz runner (parent side): splits the cases into batches, runs each batch in a child process under a
 * memory cap (V8 heap via --max-old-space-size, the whole address space via prlimit where it exists) with a
 * per-case wall-clock limit, restarts after a crash or hang with the case after it, and tallies outcomes.
 * Defects are written to `outDir` as reproducer files plus a JSON note each.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeCase, type Seed } from "./mutate.js";
import type { WorkerMessage, WorkerSpec } from "./worker.js";

export interface FuzzOptions {
  readonly cases: number;
  readonly runSeed: number;
  readonly seedDir: string;
  readonly seeds: readonly Seed[];
  readonly tmpDir: string;
  /** Where reproducers go; none are written without it. */
  readonly outDir?: string;
  readonly workers?: number;
  readonly batch?: number;
  /** A case running longer than this is a hang (default 60 s: the machine is shared and slow). */
  readonly caseLimitMs?: number;
  /** Peak RSS above this is a defect (default 1.5 GiB). */
  readonly memCapBytes?: number;
  /** Called after each case; `snapshot` gives the report so far (for partial reports of long runs). */
  readonly onProgress?: (done: number, total: number, snapshot: () => FuzzReport) => void;
}

export interface Defect {
  readonly index: number;
  readonly kind: "untyped-or-disagreement" | "memory" | "crash" | "hang";
  readonly detail: string;
  readonly seed: string;
  readonly mutation: string;
  readonly reproducer?: string;
}

export interface FuzzReport {
  readonly cases: number;
  readonly ok: number;
  readonly typed: number;
  readonly defects: readonly Defect[];
  /** Cases and outcomes per mutation family (the text before any number). */
  readonly byMutation: Readonly<Record<string, { cases: number; ok: number; typed: number; defects: number; ms: number }>>;
  readonly wallMs: number;
  readonly children: number;
}

const WORKER = join(import.meta.dirname, "worker.ts");
const HAS_PRLIMIT = spawnSync("prlimit", ["--version"], { stdio: "ignore" }).status === 0;
/** Address-space cap per child: enough for Node, tsx and the memory cap, far below the machine. */
const ADDRESS_SPACE_BYTES = 4 * 2 ** 30;

/** The child command line for one worker spec. */
export function workerCommand(spec: WorkerSpec): [string, string[]] {
  const node = [process.execPath, "--max-old-space-size=512", "--expose-gc", "--no-expose-wasm", "--import", "tsx", WORKER, JSON.stringify(spec)];
  return HAS_PRLIMIT ? ["prlimit", [`--as=${ADDRESS_SPACE_BYTES}`, "--", ...node]] : [node[0]!, node.slice(1)];
}

interface BatchResult {
  readonly messages: WorkerMessage[];
  /** Set when the child died or hung before finishing: the case it was on. */
  readonly lost?: { i: number; kind: "crash" | "hang"; detail: string };
}

/** Run one worker to the end of its spec (or its death); `first` is the index of its first case. */
export function runWorker(spec: WorkerSpec, first: number, total: number, caseLimitMs: number, onMessage?: (m: WorkerMessage) => void): Promise<BatchResult> {
  return new Promise((resolve) => {
    const [cmd, args] = workerCommand(spec);
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe", "ipc"], cwd: join(import.meta.dirname, "../../../..") });
    const messages: WorkerMessage[] = [];
    let stderr = "";
    let last = Date.now();
    let hung = false;
    child.stderr!.on("data", (d: Buffer) => void (stderr = (stderr + d.toString()).slice(-4000)));
    child.on("message", (m: WorkerMessage) => {
      messages.push(m);
      last = Date.now();
      onMessage?.(m);
    });
    // Startup (tsx compiling the SDK) counts against the first case, so it gets the limit twice.
    let allowance = 2 * caseLimitMs;
    const timer = setInterval(() => {
      if (Date.now() - last > allowance) {
        hung = true;
        child.kill("SIGKILL");
      }
      if (messages.length) allowance = caseLimitMs;
    }, 250);
    child.on("exit", (code, signal) => {
      clearInterval(timer);
      const done = messages.length;
      const next = first + done;
      if (done >= total) return resolve({ messages });
      // A worker stops early after a memory defect: that is reported, nothing is lost.
      if (!hung && code === 0 && messages.at(-1)?.detail?.startsWith("memory:")) return resolve({ messages });
      const detail = hung
        ? `no result within ${caseLimitMs} ms`
        : `child exited (${signal ?? `code ${code}`}): ${stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 500)}`;
      resolve({ messages, lost: { i: next, kind: hung ? "hang" : "crash", detail } });
    });
  });
}

/**
 * Check `files` in child processes (regression tests): a child that stops early (after a memory defect) or dies
 * is replaced and the rest go on. Results are keyed by file.
 */
export async function checkFilesInChildren(files: readonly string[], tmpDir: string, memCapBytes: number, caseLimitMs: number): Promise<Map<string, WorkerMessage>> {
  const out = new Map<string, WorkerMessage>();
  let from = 0;
  while (from < files.length) {
    const rest = files.slice(from);
    const res = await runWorker({ files: rest, tmpDir, memCapBytes }, 0, rest.length, caseLimitMs);
    for (const m of res.messages) out.set(rest[m.i]!, m);
    from += res.messages.length;
    if (res.lost) {
      out.set(rest[res.lost.i]!, { i: res.lost.i, outcome: "defect", detail: `${res.lost.kind}: ${res.lost.detail}`, peakRssBytes: 0, ms: 0 });
      from++;
    }
  }
  return out;
}

function family(mutation: string): string {
  return mutation.replace(/[-\d.×]+.*$/, "").trim() || mutation;
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const t0 = Date.now();
  const workers = o.workers ?? 2;
  const batch = o.batch ?? 2000;
  const caseLimitMs = o.caseLimitMs ?? 60_000;
  const memCapBytes = o.memCapBytes ?? 1.5 * 2 ** 30;
  const queue: Array<[number, number]> = [];
  for (let s = 0; s < o.cases; s += batch) queue.push([s, Math.min(batch, o.cases - s)]);
  let ok = 0;
  let typed = 0;
  let done = 0;
  let children = 0;
  const defects: Defect[] = [];
  const byMutation: Record<string, { cases: number; ok: number; typed: number; defects: number; ms: number }> = {};
  const tally = (mutation: string, outcome: "ok" | "typed" | "defect", ms = 0) => {
    const f = (byMutation[family(mutation)] ??= { cases: 0, ok: 0, typed: 0, defects: 0, ms: 0 });
    f.cases++;
    f.ms += ms;
    if (outcome === "ok") f.ok++;
    else if (outcome === "typed") f.typed++;
    else f.defects++;
  };
  const addDefect = (index: number, kind: Defect["kind"], detail: string) => {
    const c = makeCase(o.seeds, o.runSeed, index);
    let reproducer: string | undefined;
    if (o.outDir) {
      mkdirSync(o.outDir, { recursive: true });
      reproducer = join(o.outDir, `case-${index}.${c.bytes[0] === 0x50 ? "pt" : "safetensors"}`);
      writeFileSync(reproducer, c.bytes);
      writeFileSync(`${reproducer}.json`, JSON.stringify({ index, runSeed: o.runSeed, kind, detail, seed: c.seed, mutation: c.mutation }, null, 2));
    }
    defects.push({ index, kind, detail, seed: c.seed, mutation: c.mutation, ...(reproducer ? { reproducer } : {}) });
    tally(c.mutation, "defect");
  };
  const runOne = async (): Promise<void> => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const [start, count] = job;
      const spec: WorkerSpec = { seedDir: o.seedDir, runSeed: o.runSeed, start, count, tmpDir: o.tmpDir, memCapBytes };
      children++;
      const res = await runWorker(spec, start, count, caseLimitMs, (m) => {
        done++;
        if (m.outcome === "ok") ok++;
        else if (m.outcome === "typed") typed++;
        if (m.outcome === "defect") addDefect(m.i, m.detail?.startsWith("memory:") ? "memory" : "untyped-or-disagreement", m.detail ?? "");
        else tally(m.mutation ?? "", m.outcome, m.ms);
        o.onProgress?.(done, o.cases, snapshot);
      });
      const next = start + res.messages.length;
      if (res.lost) {
        done++;
        addDefect(res.lost.i, res.lost.kind, res.lost.detail);
        if (res.lost.i + 1 < start + count) queue.unshift([res.lost.i + 1, start + count - res.lost.i - 1]);
      } else if (next < start + count) {
        queue.unshift([next, start + count - next]);
      }
    }
  };
  const snapshot = (): FuzzReport => ({ cases: done, ok, typed, defects: [...defects].sort((a, b) => a.index - b.index), byMutation: structuredClone(byMutation), wallMs: Date.now() - t0, children });
  await Promise.all(Array.from({ length: workers }, runOne));
  return snapshot();
}
