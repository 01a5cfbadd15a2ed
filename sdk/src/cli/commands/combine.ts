/**
 * `loraport combine`: several PEFT adapters of one base → one adapter, exactly, as PEFT's
 * `add_weighted_adapter(..., combination_type="cat")`: ΔW = Σ wᵢ·ΔWᵢ, rank Σ rᵢ.
 */
import type { Command } from "commander";
import { AdapterError } from "../../errors.js";
import { catAdapters } from "../../adapter/combine.js";
import { readPeftAdapter, writePeftAdapter } from "../../adapter/peft-io.js";
import { resolveModule } from "../../adapter/config.js";
import { assertOutputNotInput } from "../../internal/output-guard.js";
import { peftAdapterFiles } from "../written-files.js";

function parseWeights(raw: string | undefined, count: number): number[] {
  if (raw === undefined) return Array.from({ length: count }, () => 1);
  const parts = raw.split(",").map((s) => s.trim());
  const weights = parts.map(Number);
  if (parts.some((p) => p === "") || weights.some((w) => !Number.isFinite(w))) throw new AdapterError(`--weights '${raw}': expected numbers separated by commas`);
  if (weights.length !== count) throw new AdapterError(`--weights '${raw}': ${weights.length} weights for ${count} adapters`);
  return weights;
}

export function registerCombine(program: Command): void {
  program
    .command("combine")
    .description("combine PEFT adapters of one base into one, exactly (PEFT's add_weighted_adapter 'cat': ΔW = Σ wᵢ·ΔWᵢ)")
    .argument("<adapters...>", "PEFT adapter folders (two or more)")
    .requiredOption("--out <dir>", "folder for the combined PEFT adapter")
    .option("--weights <w1,w2,...>", "one weight per adapter (default 1 each)")
    .option("--json", "print one JSON object (files written with their sizes, modules, ranks) instead of text")
    .action(async (dirs: string[], opts: { out: string; weights?: string; json?: boolean }) => {
      if (dirs.length < 2) throw new AdapterError(`combine: expected two or more adapter folders, got ${dirs.length}`);
      const weights = parseWeights(opts.weights, dirs.length);
      assertOutputNotInput(opts.out, dirs.map((path) => ({ flag: "input adapter", path })));
      const adapters = [];
      for (const dir of dirs) {
        const { adapter, warnings } = await readPeftAdapter(dir);
        for (const w of warnings) process.stderr.write(`loraport: warning: ${dir}: ${w}\n`);
        adapters.push(adapter);
      }
      const combined = catAdapters(adapters, weights);
      await writePeftAdapter(opts.out, combined);
      const ranks = [...new Set([...combined.modules.keys()].map((n) => resolveModule(combined.config, n).r))].sort((a, b) => a - b);
      if (opts.json) {
        console.log(JSON.stringify({ command: "combine", out: opts.out, files: peftAdapterFiles(opts.out), adapters: dirs, weights, modules: combined.modules.size, ranks, savedWhole: combined.extraTensors.size }));
        return;
      }
      console.log(`combined ${dirs.length} adapters (weights ${weights.join(", ")}) into ${combined.modules.size} modules of rank ${ranks.join("/")} → ${opts.out}`);
    });
}
