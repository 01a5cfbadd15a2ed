/** `loraport export --mode adapter-inputs|merged`: inference graphs for the ONNX Runtime path. */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { writePeftAdapter } from "../../adapter/peft-io.js";
import { Sidecar } from "../../bridge/sidecar.js";
import { FileMissingError, LoraportError } from "../../errors.js";
import { readAdapterFromPath } from "../../runtime/read-adapter.js";
import { progressBar } from "../progress-bar.js";
import type { ExportCliOptions } from "./export.js";
import { loralibOptions } from "../loralib-options.js";

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
    const { adapter, notes } = await readAdapterFromPath(opts.adapter, loralibOptions(opts as Parameters<typeof loralibOptions>[0], modelType === "gpt2"));
    for (const n of notes) process.stderr.write(`loraport: ${n}\n`);
    scratch = mkdtempSync(join(dirname(resolve(opts.out)), ".loraport-adapter-"));
    await writePeftAdapter(scratch, adapter);
    adapterDir = scratch;
  }

  const bar = progressBar();
  const sc = await Sidecar.start();
  try {
    const res = await sc.exportOnnx(opts.base, opts.out, {
      mode,
      ...(opts.targets ? { targets: opts.targets.split(",").map((s) => s.trim()).filter(Boolean) } : {}),
      ...(adapterDir ? { adapter: adapterDir } : {}),
      ...(opts.externalData ? { externalData: opts.externalData } : {}),
      ...(opts.headInputs ? { headInputs: opts.headInputs === "none" ? [] : opts.headInputs.split(",").map((s) => s.trim()).filter(Boolean) } : {}),
      ...(opts.kvCache === false ? { kvCache: false } : {}),
      onProgress: bar.onProgress,
    });
    bar.stop();
    if (opts.json) console.log(JSON.stringify(res));
    else console.log(`exported ${res.mode} model to ${res.out} (${res.loraModules} modules with LoRA inputs, ${res.seconds.toFixed(1)} s)`);
  } finally {
    bar.stop();
    await sc.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}
