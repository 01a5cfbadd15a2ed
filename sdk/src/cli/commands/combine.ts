/**
 * `loraport combine`: several PEFT adapters of one base → one adapter, as PEFT's
 * `add_weighted_adapter(..., combination_type=--method)`; the default `cat` is exact: ΔW = Σ wᵢ·ΔWᵢ, rank Σ rᵢ.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { AdapterError, ArgumentError, FileMissingError } from "../../errors.js";
import { COMBINATION_METHODS, combineAdapters, type CombinationMethod, type CombineOptions } from "../../adapter/combine.js";
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

interface MethodFlags {
  method?: string;
  density?: string;
  majoritySignMethod?: string;
  svdRank?: string;
  svdClamp?: string;
  seed?: string;
  moduleOrder?: string;
}

/** `--module-order`: module names one per line (PEFT's `base_model.model.` prefix allowed), the model's named_modules() order. */
function readModuleOrder(path: string | undefined): string[] | undefined {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new FileMissingError(path, `--module-order: cannot read ${path}`);
  }
  return text.split("\n").map((l) => l.trim()).filter((l) => l !== "").map((l) => (l.startsWith("base_model.model.") ? l.slice("base_model.model.".length) : l));
}

/** The --method flags as combineAdapters options; DARE without --seed gets a random seed, reported back. */
function parseMethodFlags(opts: MethodFlags): Omit<CombineOptions, "weights"> {
  const method = (opts.method ?? "cat") as CombinationMethod;
  if (!(COMBINATION_METHODS as readonly string[]).includes(method)) throw new ArgumentError("--method", `one of ${COMBINATION_METHODS.join(", ")}; got '${opts.method}'`);
  const num = (flag: string, raw: string | undefined, integer: boolean): number | undefined => {
    if (raw === undefined) return undefined;
    const v = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(v) || (integer && !Number.isSafeInteger(v))) throw new ArgumentError(flag, `${integer ? "an integer" : "a number"}, got '${raw}'`);
    return v;
  };
  const sign = opts.majoritySignMethod;
  if (sign !== undefined && sign !== "total" && sign !== "frequency") throw new ArgumentError("--majority-sign-method", `total or frequency, got '${sign}'`);
  const density = num("--density", opts.density, false);
  const svdRank = num("--svd-rank", opts.svdRank, true);
  const svdClamp = num("--svd-clamp", opts.svdClamp, false);
  let seed = num("--seed", opts.seed, true);
  if (seed === undefined && method.startsWith("dare")) seed = Math.floor(Math.random() * 2 ** 31);
  return {
    method,
    ...(density !== undefined ? { density } : {}),
    ...(sign !== undefined ? { majoritySignMethod: sign } : {}),
    ...(svdRank !== undefined ? { svdRank } : {}),
    ...(svdClamp !== undefined ? { svdClamp } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(opts.moduleOrder !== undefined ? { moduleOrder: readModuleOrder(opts.moduleOrder)! } : {}),
  };
}

export function registerCombine(program: Command): void {
  program
    .command("combine")
    .description("combine PEFT adapters of one base into one, as PEFT's add_weighted_adapter (default 'cat', exact: ΔW = Σ wᵢ·ΔWᵢ)")
    .argument("<adapters...>", "PEFT adapter folders (two or more)")
    .requiredOption("--out <dir>", "folder for the combined PEFT adapter")
    .option("--weights <w1,w2,...>", "one weight per adapter (default 1 each)")
    .option("--method <m>", `combination type: ${COMBINATION_METHODS.join("|")} (default cat)`)
    .option("--density <d>", "fraction of entries kept (ties, dare, magnitude_prune methods), 0..1")
    .option("--majority-sign-method <m>", "TIES sign election: total (default) or frequency")
    .option("--svd-rank <r>", "svd methods: rank of the result (default the largest adapter rank)")
    .option("--svd-clamp <q>", "svd methods: clamp factors at this quantile of their entries, 0..1")
    .option("--seed <n>", "dare methods: the torch.manual_seed value set before PEFT's add_weighted_adapter (default random, printed)")
    .option("--module-order <file>", "dare methods: module names in the base model's named_modules() order, one a line (PEFT's mask order; default the adapters' order)")
    .option("--json", "print one JSON object (files written with their sizes, modules, ranks) instead of text")
    .action(async (dirs: string[], opts: { out: string; weights?: string; json?: boolean } & MethodFlags) => {
      if (dirs.length < 2) throw new AdapterError(`combine: expected two or more adapter folders, got ${dirs.length}`);
      const weights = parseWeights(opts.weights, dirs.length);
      const methodOptions = parseMethodFlags(opts);
      assertOutputNotInput(opts.out, dirs.map((path) => ({ flag: "input adapter", path })));
      const adapters = [];
      for (const dir of dirs) {
        const { adapter, warnings } = await readPeftAdapter(dir);
        for (const w of warnings) process.stderr.write(`loraport: warning: ${dir}: ${w}\n`);
        adapters.push(adapter);
      }
      const combined = combineAdapters(adapters, { ...methodOptions, weights });
      await writePeftAdapter(opts.out, combined);
      const ranks = [...new Set([...combined.modules.keys()].map((n) => resolveModule(combined.config, n).r))].sort((a, b) => a - b);
      if (opts.json) {
        console.log(JSON.stringify({ command: "combine", out: opts.out, files: peftAdapterFiles(opts.out), adapters: dirs, weights, method: methodOptions.method, ...(methodOptions.seed !== undefined ? { seed: methodOptions.seed } : {}), modules: combined.modules.size, ranks, savedWhole: combined.extraTensors.size }));
        return;
      }
      const seedNote = methodOptions.seed !== undefined ? ` (seed ${methodOptions.seed})` : "";
      console.log(`combined ${dirs.length} adapters (weights ${weights.join(", ")}) into ${combined.modules.size} modules of rank ${ranks.join("/")} by ${methodOptions.method}${seedNote} → ${opts.out}`);
    });
}
