/** `loraport export --mode adapter-inputs|merged`: inference graphs for the ONNX Runtime path. */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { writePeftAdapter } from "../../adapter/peft-io.js";
import { Sidecar } from "../../bridge/sidecar.js";
import { FileMissingError, LoraportError, RemoteError } from "../../errors.js";
import { readAdapterFromPath } from "../../runtime/read-adapter.js";
import { progressReporter, type ProgressReporter } from "../progress-bar.js";
import type { ExportCliOptions } from "./export.js";
import { loralibOptions } from "../loralib-options.js";

/** `--r`, or its hidden old name `--lora-r`; both at once must agree. */
export function rankOption(opts: ExportCliOptions): string | undefined {
  if (opts.r !== undefined && opts.loraR !== undefined && opts.r !== opts.loraR) {
    throw new LoraportError("E_USAGE", `--r ${opts.r} and --lora-r ${opts.loraR}: the same option under two names; give one`);
  }
  return opts.r ?? opts.loraR;
}

/** Starting the sidecar (Python and torch imported) takes seconds: it is a step of its own on the display. */
export async function startSidecarShowing(progress: ProgressReporter): Promise<Sidecar> {
  progress.onProgress({ phase: "sidecar", done: 0, total: 1, unit: "processes", message: "starting Python (torch import)" });
  const sc = await Sidecar.start();
  progress.onProgress({ phase: "sidecar", done: 1, total: 1, unit: "processes", message: "ready" });
  return sc;
}

/** The exporter's refusals (ExportError, bad arguments) as one loraport line, without the Python class path. */
function explainExport(err: unknown): unknown {
  if (!(err instanceof RemoteError)) return err;
  const type = err.pyType.split(".").at(-1) ?? err.pyType;
  if (!["ExportError", "ValueError", "FileNotFoundError", "FileExistsError"].includes(type)) return err;
  const message = err.message.startsWith(`${err.pyType}: `) ? err.message.slice(err.pyType.length + 2) : err.message;
  return new LoraportError("E_EXPORT", `export: ${message}`, { cause: err });
}

export async function exportInference(opts: ExportCliOptions): Promise<void> {
  const mode = opts.mode as "adapter-inputs" | "merged";
  if (!existsSync(join(opts.base, "config.json"))) {
    throw new FileMissingError(join(opts.base, "config.json"), `--base ${opts.base}: not a Hugging Face model folder (no config.json)`);
  }
  if (mode === "merged" && !opts.adapter) throw new LoraportError("E_USAGE", "--mode merged needs --adapter <PEFT folder or loralib checkpoint>");
  if (mode === "adapter-inputs" && opts.adapter) throw new LoraportError("E_USAGE", "--adapter is for --mode merged; adapter-inputs models take adapters at run time (loraport run --adapter)");
  if (opts.externalData && !["auto", "yes", "no"].includes(opts.externalData)) throw new LoraportError("E_USAGE", `--external-data ${opts.externalData}: expected auto, yes or no`);

  // A loralib checkpoint is converted to a PEFT folder first (exactly, in TS); a PEFT folder is used as is.
  let adapterDir = opts.adapter;
  let scratch: string | undefined;
  if (opts.adapter && !statSync(opts.adapter, { throwIfNoEntry: false })?.isDirectory()) {
    // GPT-2's projections are Conv1D (fan_in_fan_out); the others loraport exports are nn.Linear.
    const modelType = (JSON.parse(readFileSync(join(opts.base, "config.json"), "utf8")) as { model_type?: string }).model_type;
    const { adapter, notes } = await readAdapterFromPath(opts.adapter, loralibOptions(opts, modelType === "gpt2"));
    for (const n of notes) process.stderr.write(`loraport: ${n}\n`);
    scratch = mkdtempSync(join(dirname(resolve(opts.out)), ".loraport-adapter-"));
    await writePeftAdapter(scratch, adapter);
    adapterDir = scratch;
  }

  const bar = progressReporter(opts);
  let sc: Sidecar | undefined;
  try {
    sc = await startSidecarShowing(bar);
    const res = await sc.exportOnnx(opts.base, opts.out, {
      mode,
      ...(opts.targets ? { targets: opts.targets.split(",").map((s) => s.trim()).filter(Boolean) } : {}),
      ...(adapterDir ? { adapter: adapterDir } : {}),
      ...(opts.externalData ? { externalData: opts.externalData } : {}),
      ...(opts.headInputs ? { headInputs: opts.headInputs === "none" ? [] : opts.headInputs.split(",").map((s) => s.trim()).filter(Boolean) } : {}),
      ...(opts.kvCache === false ? { kvCache: false } : {}),
      ...(opts.ortAdapterDefaults ? { ortAdapterDefaults: true } : {}),
      onProgress: bar.onProgress,
    }).catch((err: unknown) => {
      throw explainExport(err);
    });
    bar.stop();
    if (opts.json) console.log(JSON.stringify(res));
    else console.log(`exported ${res.mode} model to ${res.out} (${res.loraModules} modules with LoRA inputs, ${res.seconds.toFixed(1)} s)`);
  } finally {
    bar.stop();
    await sc?.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}
