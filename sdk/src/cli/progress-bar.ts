import cliProgress from "cli-progress";
import type { ProgressCallback, ProgressEvent } from "../progress.js";

/**
 * A progress callback that draws a bar on stderr (only on a terminal, so piped output and --json stay clean).
 * Call `stop()` when the work ends.
 */
export function progressBar(enabled = process.stderr.isTTY === true): { onProgress: ProgressCallback; stop(): void } {
  if (!enabled) return { onProgress: () => {}, stop: () => {} };
  let bar: cliProgress.SingleBar | undefined;
  let phase = "";
  const onProgress = (e: ProgressEvent): void => {
    if (!bar || e.phase !== phase) {
      bar?.stop();
      phase = e.phase;
      bar = new cliProgress.SingleBar(
        { stream: process.stderr, format: `${e.phase} [{bar}] {value}/{total} ${e.unit ?? ""} {message}`, hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      );
      bar.start(e.total ?? 0, e.done, { message: e.message ?? "" });
    }
    if (e.total !== undefined) bar.setTotal(e.total);
    bar.update(e.done, { message: e.message ?? "" });
  };
  return { onProgress, stop: () => bar?.stop() };
}
