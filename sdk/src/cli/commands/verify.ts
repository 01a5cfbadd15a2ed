import type { Command } from "commander";
import { runVerify } from "../../conformance/verify.js";
import { emitReport } from "./conformance.js";

/** `loraport verify`: the conformance comparisons on a user's own base model and PEFT adapter. */
export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description("compare loraport's merge and ONNX Runtime forward with PEFT's on your base model and adapter")
    .requiredOption("--base <dir>", "Hugging Face model folder (config.json + safetensors)")
    .requiredOption("--adapter <dir>", "PEFT adapter folder")
    .option("--inputs <file>", 'JSON {"input_ids": [[...]], "attention_mask": [[...]]}')
    .option("--json", "print the report as one JSON object")
    .option("--report <file.html>", "write the HTML report there (and .md and .json beside it)")
    .option("--keep <dir>", "keep the work files in this folder")
    .action(async (opts: { base: string; adapter: string; inputs?: string; json?: boolean; report?: string; keep?: string }) => {
      const report = await runVerify({ base: opts.base, adapter: opts.adapter, ...(opts.inputs ? { inputs: opts.inputs } : {}), ...(opts.keep ? { workDir: opts.keep } : {}) });
      await emitReport(report, opts);
    });
}
