import { type Command, Option } from "commander";
import { LoraportError } from "../../errors.js";
import { convertTorchToSafetensors } from "../../formats/convert.js";
import { assertOutputNotInput } from "../../internal/output-guard.js";
import { writtenFiles } from "../written-files.js";
import { toPeft, withPeftOptions, type ConvertPeftOptions } from "./convert-peft.js";
import { ggufToPeft, isGgufFile, toGguf, withGgufOptions, type ConvertGgufOptions } from "./convert-gguf.js";
import { toOnnxAdapter, withOnnxAdapterOptions, type ConvertOnnxAdapterOptions } from "./convert-onnx-adapter.js";

/** What `convert` can produce; each target is one function here (the adapter engineer adds `peft`). */
type ConvertOptions = { out: string; to: string; json?: boolean } & ConvertPeftOptions & ConvertGgufOptions & ConvertOnnxAdapterOptions;
const TARGETS: Record<string, (input: string, opts: ConvertOptions) => Promise<void>> = {
  safetensors: toSafetensors,
  peft: (input, opts) => (isGgufFile(input) ? ggufToPeft(input, opts) : toPeft(input, opts)),
  gguf: toGguf,
  "onnx-adapter": toOnnxAdapter,
};

/** `loraport convert <checkpoint> --out <file> [--to safetensors|peft]` (peft flags: convert-peft.ts). */
export function registerConvert(program: Command): void {
  withOnnxAdapterOptions(withGgufOptions(withPeftOptions(program
    .command("convert")
    .description("convert a checkpoint: a torch .pt/.bin to safetensors (metadata {\"format\": \"pt\"}, shared tensors stored once), a loralib checkpoint or a GGUF LoRA to a PEFT adapter folder (--to peft), or a PEFT adapter / loralib checkpoint / HF model folder to GGUF for llama.cpp (--to gguf, see docs/gguf.md), or an adapter to ONNX Runtime's .onnx_adapter for an adapter-inputs export (--to onnx-adapter --export <dir>, see docs/onnx-adapter.md)")
    .argument("<input>", "the checkpoint to convert")
    .requiredOption("--out <path>", "where to write the result")
    .addOption(new Option("--to <target>", "what to write: safetensors, peft, gguf or onnx-adapter").default("safetensors"))
    .option("--json", "print one JSON object (files written with their sizes, tensors) instead of text"))))
    .action(async (input: string, opts: ConvertOptions) => {
      const target = TARGETS[opts.to];
      if (!target) throw new LoraportError("E_USAGE", `--to ${opts.to}: unknown target (expected one of ${Object.keys(TARGETS).join(", ")})`);
      // Every target: the output may not be, lie inside or hold the input (symlinks and hard links resolved).
      assertOutputNotInput(opts.out, [{ flag: "<input>", path: input }]);
      await target(input, opts);
    });
}

async function toSafetensors(input: string, opts: ConvertOptions): Promise<void> {
  const r = await convertTorchToSafetensors(input, opts.out);
  if (opts.json) {
    const aliases = Object.fromEntries(r.aliases);
    process.stdout.write(`${JSON.stringify({ command: "convert", to: "safetensors", input, out: opts.out, files: writtenFiles([opts.out]), tensors: r.written.length, dataBytes: r.bytes, aliases })}\n`);
    return;
  }
  const lines = [`wrote ${opts.out}: ${r.written.length} tensors, ${r.bytes} bytes of data`];
  for (const [alias, kept] of r.aliases) lines.push(`  '${alias}' shares its tensor with '${kept}': stored once, as '${kept}'`);
  process.stdout.write(`${lines.join("\n")}\n`);
}
