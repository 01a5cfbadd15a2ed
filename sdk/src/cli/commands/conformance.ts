import type { Command } from "commander";
import { LoraportError } from "../../errors.js";
import { runConformance } from "../../conformance/runner.js";
import { renderMarkdown, renderSummary } from "../../conformance/render.js";
import type { ConformanceReport } from "../../conformance/report.js";
import { writeReport } from "../../conformance/write-report.js";
import { progressReporter } from "../progress-bar.js";

/**
 * Print the report and set the exit code: `--json` the whole report as JSON; `--report F` writes the files and
 * prints only a short summary and their paths; otherwise the Markdown tables.
 */
export async function emitReport(report: ConformanceReport, opts: { json?: boolean; report?: string }): Promise<void> {
  if (opts.report) {
    const paths = await writeReport(report, opts.report);
    if (!opts.json) process.stdout.write(renderSummary(report, [paths.html, paths.markdown, paths.json]));
    else process.stderr.write(`report: ${paths.html} (also ${paths.markdown}, ${paths.json})\n`);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else if (!opts.report) process.stdout.write(renderMarkdown(report));
  if (!report.passed) process.exitCode = 1;
}

function parseAlpha(v: string): number {
  const x = Number(v);
  if (!Number.isFinite(x) || x <= 0) throw new LoraportError("E_USAGE", `--alpha must be a positive number, got '${v}'`);
  return x;
}

/** `loraport conformance`: parity of every loraport backend with loralib and PEFT, on the case files. */
export function registerConformance(program: Command): void {
  program
    .command("conformance")
    .description("check loraport's numbers against loralib and PEFT on the published checkpoints and generated cases")
    .option("--json", "print the report as one JSON object (schemas/conformance-report.schema.json)")
    .option("--report <file.html>", "write the HTML report there (and .md and .json beside it)")
    .option("--reference-dir <dir>", "folder of the published checkpoints (default $LORAPORT_REFERENCE_DIR or ../shared/reference)")
    .option("--base <dir>", "a Hugging Face model folder with real base weights, used by the published case of its architecture")
    .option("--alpha <n>", "lora_alpha for RoBERTa-base MNLI (not stored in the file; default 16, the upstream scripts' value)", parseAlpha)
    .option("--only <ids>", "comma-separated substrings of case ids to run")
    .option("--cases <dir>", "folder of case files (default conformance/cases)")
    .option("--keep <dir>", "keep the work files (reference tensors, adapters, exports) in this folder")
    .option("--progress", "progress as phase lines on stderr, also when stderr is not a terminal or with --json")
    .action(async (opts: { json?: boolean; progress?: boolean; report?: string; referenceDir?: string; base?: string; alpha?: number; only?: string; cases?: string; keep?: string }) => {
      const bar = progressReporter(opts);
      try {
        const report = await runConformance({
          onProgress: bar.onProgress,
          ...(opts.referenceDir ? { referenceDir: opts.referenceDir } : {}),
          ...(opts.base ? { base: opts.base } : {}),
          ...(opts.alpha !== undefined ? { alpha: opts.alpha } : {}),
          ...(opts.only ? { only: opts.only.split(",").filter(Boolean) } : {}),
          ...(opts.cases ? { casesDir: opts.cases } : {}),
          ...(opts.keep ? { workDir: opts.keep } : {}),
        });
        bar.stop();
        await emitReport(report, opts);
      } finally {
        bar.stop();
      }
    });
}
