/**
 * The GGUF branches of `loraport convert`:
 * - `--to gguf` from a PEFT adapter folder or a loralib checkpoint (needs `--base`: the HF model folder or
 *   its base .gguf, for the architecture and head counts) → a llama.cpp GGUF LoRA adapter;
 * - `--to gguf` from an HF model folder (config.json, no adapter_config.json) → a base GGUF (loraport's writer);
 * - `--to peft` from a GGUF LoRA adapter → a PEFT adapter folder.
 */
import { existsSync, statSync } from "node:fs";
import { Option, type Command } from "commander";
import { AdapterError, LoraportError } from "../../errors.js";
import { describeAdapter, type LoraAdapter } from "../../adapter/adapter.js";
import { adapterFromGguf, adapterToGguf, type GgufOutType } from "../../adapter/gguf-adapter.js";
import { writeGgufModel } from "../../adapter/gguf-base.js";
import { readGgufBaseInfo } from "../../adapter/gguf-hparams.js";
import { CONFIG_FILE, readPeftAdapter, writePeftAdapter } from "../../adapter/peft-io.js";
import { readGguf, writeGguf } from "../../formats/gguf/index.js";
import { join } from "node:path";
import { peftAdapterFiles, writtenFiles } from "../written-files.js";
import { loralibAdapter, type ConvertPeftOptions } from "./convert-peft.js";

export interface ConvertGgufOptions extends ConvertPeftOptions {
  readonly base?: string;
  readonly outtype?: string;
}

const OUTTYPES: Readonly<Record<string, GgufOutType>> = { f32: "F32", f16: "F16", bf16: "BF16" };

/** The flags of the gguf branches, added to the `convert` command. */
export function withGgufOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--base <path>", "--to gguf of an adapter: the base model (HF folder with config.json, or its base .gguf); --to peft of a loralib checkpoint: the base's safetensors, whose weight shapes settle ConvLoRA kernels and groups"))
    .addOption(new Option("--outtype <type>", "--to gguf: tensor type of the matrices (f32, f16, bf16)").default("f32"));
}

export function isGgufFile(path: string): boolean {
  return path.toLowerCase().endsWith(".gguf");
}

function outtypeOf(v: string | undefined): GgufOutType {
  const t = OUTTYPES[(v ?? "f32").toLowerCase()];
  if (!t) throw new LoraportError("E_USAGE", `--outtype ${v}: expected f32, f16 or bf16`);
  return t;
}

function isDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory();
}

/** `convert --to gguf`. */
export async function toGguf(input: string, opts: ConvertGgufOptions): Promise<void> {
  if (!opts.out) throw new LoraportError("E_USAGE", "convert --to gguf needs --out <file.gguf>");
  const outtype = outtypeOf(opts.outtype);
  const lines: string[] = [];
  let summary: Record<string, unknown>;
  if (isDir(input) && !existsSync(join(input, CONFIG_FILE)) && existsSync(join(input, "config.json"))) {
    const r = await writeGgufModel(input, opts.out, outtype);
    lines.push(...r.lines);
    summary = { kind: "model", tensors: r.tensors };
  } else {
    let adapter: LoraAdapter;
    if (isDir(input)) {
      const read = await readPeftAdapter(input);
      adapter = read.adapter;
      lines.push(...read.warnings.map((w) => `warning: ${w}`));
    } else {
      const l = await loralibAdapter(input, opts);
      adapter = l.adapter;
      lines.push(...l.report.lines);
    }
    if (!opts.base) throw new AdapterError("convert --to gguf of an adapter needs --base <HF model folder | base .gguf> (architecture and head counts)");
    const base = await readGgufBaseInfo(opts.base);
    const file = adapterToGguf(adapter, base, outtype);
    await writeGguf(opts.out, file);
    lines.push(...base.notes, ...file.lines);
    lines.push(`wrote ${opts.out}: ${base.arch.name} GGUF LoRA adapter, ${adapter.modules.size} modules, ${outtype}, adapter.lora.alpha=${adapter.config.lora_alpha}`);
    summary = { kind: "adapter", architecture: base.arch.name, modules: adapter.modules.size, rescaledModules: file.lines.length };
  }
  if (opts.json) {
    console.log(JSON.stringify({ command: "convert", to: "gguf", input, out: opts.out, files: writtenFiles([opts.out]), outtype, ...summary, report: lines }));
  } else {
    for (const l of lines) console.log(l);
  }
}

/** `convert <adapter.gguf> --to peft`. */
export async function ggufToPeft(input: string, opts: ConvertGgufOptions): Promise<void> {
  if (!opts.out) throw new LoraportError("E_USAGE", "convert --to peft needs --out <dir>");
  const { header, tensors } = await readGguf(input);
  const base = opts.base ? await readGgufBaseInfo(opts.base) : undefined;
  const { adapter, lines } = adapterFromGguf(header, tensors, base);
  await writePeftAdapter(opts.out, adapter);
  const d = describeAdapter(adapter);
  lines.push(`wrote ${opts.out}: ${d.modules.length} modules, ${d.loraParams.toLocaleString("en-US")} LoRA parameters`);
  if (opts.json) {
    console.log(JSON.stringify({ command: "convert", to: "peft", input, out: opts.out, files: peftAdapterFiles(opts.out), modules: d.modules.length, loraParams: d.loraParams, report: lines }));
  } else {
    for (const l of lines) console.log(l);
  }
}
