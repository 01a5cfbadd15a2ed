/**
 * The `--to onnx-adapter` branch of `loraport convert`: a PEFT adapter folder (or a loralib checkpoint) → ONNX
 * Runtime's `.onnx_adapter` file for an adapter-inputs export (`--export <dir>`), for ORT GenAI / C# / Python users.
 */
import { Option, type Command } from "commander";
import { statSync } from "node:fs";
import type { LoraAdapter } from "../../adapter/adapter.js";
import { readPeftAdapter } from "../../adapter/peft-io.js";
import { FileMissingError, LoraportError } from "../../errors.js";
import { assertOutputNotInput } from "../../internal/output-guard.js";
import { readManifest } from "../../runtime/manifest.js";
import { exportOnnxAdapter } from "../../runtime/onnx-adapter-export.js";
import { writtenFiles } from "../written-files.js";
import { loralibAdapter, type ConvertPeftOptions } from "./convert-peft.js";

export interface ConvertOnnxAdapterOptions {
  readonly export?: string;
}

/** The flag of the onnx-adapter branch, added to the `convert` command. */
export function withOnnxAdapterOptions(cmd: Command): Command {
  return cmd.addOption(new Option("--export <dir>", "--to onnx-adapter: the adapter-inputs export (loraport export --ort-adapter-defaults) the file is for"));
}

/** `convert --to onnx-adapter`: the target function `convert.ts` dispatches to. */
export async function toOnnxAdapter(input: string, opts: ConvertOnnxAdapterOptions & ConvertPeftOptions & { out: string; json?: boolean }): Promise<void> {
  if (!opts.export) throw new LoraportError("E_USAGE", "--to onnx-adapter needs --export <dir>: the adapter-inputs export the adapter file is for");
  assertOutputNotInput(opts.out, [{ flag: "--export", path: opts.export }]);
  const manifest = readManifest(opts.export);
  let adapter: LoraAdapter;
  const isDir = statSync(input, { throwIfNoEntry: false })?.isDirectory();
  if (isDir === undefined) throw new FileMissingError(input, `${input}: adapter not found (expected a PEFT adapter folder or a loralib checkpoint file)`);
  if (isDir) adapter = (await readPeftAdapter(input)).adapter;
  else adapter = (await loralibAdapter(input, { ...opts, ...(opts.fanInFanOut === undefined && manifest.model_type === "gpt2" ? { fanInFanOut: true } : {}) })).adapter;
  const r = await exportOnnxAdapter(opts.export, adapter, opts.out);
  if (opts.json) {
    console.log(JSON.stringify({ command: "convert", to: "onnx-adapter", input, export: opts.export, out: opts.out, files: writtenFiles([opts.out]), parameters: r.parameters.length, loraIndexInput: r.loraIndexInput }));
    return;
  }
  console.log(`wrote ${opts.out}: ${r.parameters.length} parameters for ${opts.export} (${r.bytes} bytes); feed '${r.loraIndexInput}' with zeros, one per batch row`);
  if (!manifest.lora_defaults) {
    console.log(`note: ${opts.export} was exported without --ort-adapter-defaults; ONNX Runtime's Python InferenceSession.run then still asks for the LoRA inputs (re-export with it for Python)`);
  }
}
