import cliProgress from "cli-progress";
import type { ProgressCallback, ProgressEvent } from "../progress.js";

/** How a command shows the progress of its long steps on stderr. */
export type ProgressStyle = "bar" | "lines" | "off";

/** The flags that decide it: `--json` (machine output) and `--progress` (asked for explicitly). */
export interface ProgressFlags {
  readonly json?: boolean;
  readonly progress?: boolean;
}

export interface ProgressReporter {
  readonly onProgress: ProgressCallback;
  /** End the display (idempotent); call it when the work ends, also on error. */
  stop(): void;
}

/**
 * A bar on a terminal; nothing with `--json` or when stderr is not a terminal (piped output, CI logs), unless
 * `--progress` asks for it: then phase lines, which read well in a log and never touch stdout.
 */
export function progressStyle(flags: ProgressFlags, stderrIsTTY = process.stderr.isTTY === true): ProgressStyle {
  if (flags.progress) return stderrIsTTY && !flags.json ? "bar" : "lines";
  return stderrIsTTY && !flags.json ? "bar" : "off";
}

/** The reporter for a command's flags (see `progressStyle`), drawing on stderr. */
export function progressReporter(flags: ProgressFlags, stderrIsTTY = process.stderr.isTTY === true): ProgressReporter {
  const style = progressStyle(flags, stderrIsTTY);
  if (style === "bar") return progressBar(true);
  if (style === "lines") return phaseLines((s) => process.stderr.write(s));
  return { onProgress: () => {}, stop: () => {} };
}

function seconds(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function lineOf(e: ProgressEvent, elapsedMs: number): string {
  const count = e.total !== undefined ? `${e.done}/${e.total}${e.unit ? ` ${e.unit}` : ""}` : `${e.done}${e.unit ? ` ${e.unit}` : ""}`;
  return `loraport: ${e.phase} ${count}${e.message ? ` · ${e.message}` : ""} (${seconds(elapsedMs)})\n`;
}

/**
 * Progress as one line per step: a line when a phase starts, when a phase of few steps (≤ 20) moves on, when a
 * phase ends, and otherwise at most one every 2 s (a loop over thousands of tensors stays a few lines). A step that
 * runs on without events (ONNX conversion of a large model: minutes) gets a "still" line every `heartbeatMs`.
 */
export function phaseLines(write: (line: string) => void, now: () => number = () => performance.now(), heartbeatMs = 30_000): ProgressReporter {
  const t0 = now();
  let last: ProgressEvent | undefined;
  let lastAt = -Infinity;
  let stopped = false;
  const timer = setInterval(() => {
    const t = now();
    if (stopped || last === undefined || t - lastAt < heartbeatMs) return;
    if (last.total !== undefined && last.done >= last.total) return; // nothing running
    write(lineOf({ ...last, message: `${last.message ? `${last.message}, ` : ""}still running` }, t - t0));
    lastAt = t;
  }, Math.max(10, Math.floor(heartbeatMs / 3)));
  timer.unref(); // never what keeps the process alive
  const onProgress = (e: ProgressEvent): void => {
    if (stopped) return;
    const t = now();
    const newPhase = last === undefined || e.phase !== last.phase;
    const moved = !newPhase && e.done !== last!.done;
    const ended = e.total !== undefined && e.done >= e.total && !(last?.phase === e.phase && last.done === e.done);
    const coarse = e.total !== undefined && e.total <= 20;
    if (newPhase || ended || (moved && (coarse || t - lastAt >= 2000))) {
      write(lineOf(e, t - t0));
      lastAt = t;
    }
    last = e;
  };
  return {
    onProgress,
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}

/**
 * A progress callback that draws a bar on stderr (by default only on a terminal, so piped output and --json stay
 * clean), with the elapsed time ticking so a long step is visibly alive. Call `stop()` when the work ends.
 */
export function progressBar(enabled = process.stderr.isTTY === true): ProgressReporter {
  if (!enabled) return { onProgress: () => {}, stop: () => {} };
  let bar: cliProgress.SingleBar | undefined;
  let phase = "";
  const onProgress = (e: ProgressEvent): void => {
    if (!bar || e.phase !== phase) {
      bar?.stop();
      phase = e.phase;
      bar = new cliProgress.SingleBar(
        { stream: process.stderr, format: `${e.phase} [{bar}] {value}/{total} ${e.unit ?? ""} {message} · {duration_formatted}`, hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      );
      bar.start(e.total ?? 0, e.done, { message: e.message ?? "" });
    }
    if (e.total !== undefined) bar.setTotal(e.total);
    bar.update(e.done, { message: e.message ?? "" });
  };
  return { onProgress, stop: () => bar?.stop() };
}
