/**
 * The train-step exporter's refusals as loraport errors: the sidecar reports them as Python exceptions (type
 * `loraport_sidecar.export.train_checks.ExportCheckError`, ...); users get what is wrong and what to do, no class paths.
 */
import { LoraportError, RemoteError } from "../errors.js";

const BAD_INPUT = new Set(["ValueError", "FileNotFoundError", "FileExistsError"]);

/** `err` as a typed error when it is one of the exporter's refusals; any other error unchanged. */
export function explainExportError(err: unknown): unknown {
  if (!(err instanceof RemoteError)) return err;
  const type = err.pyType.split(".").at(-1) ?? err.pyType;
  const message = err.message.startsWith(`${err.pyType}: `) ? err.message.slice(err.pyType.length + 2) : err.message;
  if (type === "ExportCheckError") return new LoraportError("E_EXPORT_CHECK", `train-step export refused, nothing written: ${message}`, { cause: err });
  if (BAD_INPUT.has(type)) return new LoraportError("E_EXPORT", `train-step export: ${message}`, { cause: err });
  return err;
}
