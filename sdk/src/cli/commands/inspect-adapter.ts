/**
 * The adapter part of `loraport inspect`: when the path is a PEFT adapter folder (or a file in one) or a
 * loralib checkpoint, describe its adapters: target modules, per-module rank and scaling, parameter counts.
 * `inspect.ts` calls `inspectAdapter(path)` first; `undefined` means "not an adapter".
 */
import { existsSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { describeAdapter, type LoraAdapter, type ModuleSummary } from "../../adapter/adapter.js";
import { convertLoralibToPeft } from "../../adapter/convert.js";
import { isLoralibStateDict, loralibFromStateDict } from "../../adapter/loralib.js";
import { CONFIG_FILE, readPeftAdapter } from "../../adapter/peft-io.js";
import { loadTorchStateDict } from "../../adapter/torch-state.js";
import { LoraportError } from "../../errors.js";

export interface AdapterInspection {
  readonly format: "peft" | "loralib";
  readonly path: string;
  /** True when this path is the adapter itself (a PEFT folder): the weights listing adds nothing. */
  readonly replacesWeightsListing: boolean;
  readonly json: Record<string, unknown>;
  readonly text: string;
}

/** A module's summary plus whether it has `lora_B.bias` (`lora_bias=True`), which the kind column shows as `+bias`. */
type InspectedModule = ModuleSummary & { readonly loraBias: boolean };

function withLoraBias(adapter: LoraAdapter, modules: readonly ModuleSummary[]): InspectedModule[] {
  return modules.map((m) => ({ ...m, loraBias: adapter.modules.get(m.name)?.bBias !== undefined }));
}

function moduleLines(unsorted: readonly InspectedModule[]): string[] {
  const mods = [...unsorted].sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
  const rows = [["module", "kind", "r", "alpha", "scaling", "out×in", "params"], ...mods.map((m) => [m.name, m.kind + (m.dora ? "+dora" : "") + (m.loraBias ? "+bias" : ""), String(m.r), String(m.alpha), String(Number(m.scaling.toPrecision(6))), `${m.out}×${m.in}`, String(m.params)])];
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => `    ${r.map((c, i) => (i >= 2 ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join("  ")}`);
}

function peftFolderOf(path: string): string | undefined {
  const st = existsSync(path) ? statSync(path) : undefined;
  if (!st) return undefined;
  const dir = st.isDirectory() ? path : dirname(path);
  if (!st.isDirectory() && !/^adapter_model\.(safetensors|bin)$/.test(basename(path))) return undefined;
  return existsSync(join(dir, CONFIG_FILE)) ? dir : undefined;
}

export async function inspectAdapter(path: string): Promise<AdapterInspection | undefined> {
  const peftDir = peftFolderOf(path);
  if (peftDir) {
    const { adapter, warnings, weightsFile } = await readPeftAdapter(peftDir);
    const d = describeAdapter(adapter);
    const modules = withLoraBias(adapter, d.modules);
    const c = adapter.config;
    const targets = typeof c.target_modules === "string" ? c.target_modules : [...(c.target_modules ?? [])].sort();
    const text = [
      `${peftDir}: PEFT LoRA adapter (${basename(weightsFile)})`,
      `  task_type ${c.task_type ?? "null"}, base ${c.base_model_name_or_path ?? "null"}, target_modules ${JSON.stringify(targets)}`,
      `  r ${c.r}, lora_alpha ${c.lora_alpha}${c.use_rslora ? ", rsLoRA" : ""}${c.use_dora ? ", DoRA" : ""}${c.lora_bias ? ", lora_bias" : ""}${Object.keys(c.rank_pattern).length ? `, rank_pattern ${JSON.stringify(c.rank_pattern)}` : ""}${Object.keys(c.alpha_pattern).length ? `, alpha_pattern ${JSON.stringify(c.alpha_pattern)}` : ""}, fan_in_fan_out ${c.fan_in_fan_out}`,
      `  ${d.modules.length} modules, ${d.loraParams.toLocaleString("en-US")} LoRA parameters${d.extraParams ? `, ${d.extraParams.toLocaleString("en-US")} saved whole (${[...adapter.extraTensors.keys()].join(", ")})` : ""}`,
      ...warnings.map((w) => `  warning: ${w}`),
      ...moduleLines(modules),
    ].join("\n");
    return {
      format: "peft",
      path: peftDir,
      replacesWeightsListing: true,
      json: { format: "peft", targetModules: targets, r: c.r, loraAlpha: c.lora_alpha, useRslora: c.use_rslora, useDora: c.use_dora, loraBias: c.lora_bias, modules, loraParams: d.loraParams, extraParams: d.extraParams, savedWhole: [...adapter.extraTensors.keys()], warnings },
      text: `${text}\n`,
    };
  }
  if (!existsSync(path) || !statSync(path).isFile() || !/\.(pt|pth|bin|ckpt)$/.test(path)) return undefined;
  let state;
  try {
    state = await loadTorchStateDict(path);
  } catch (err) {
    if (err instanceof LoraportError) return undefined; // not a torch zip: the weights listing reports it
    throw err;
  }
  if (!isLoralibStateDict(state.keys())) return undefined;
  const ckpt = loralibFromStateDict(path, state);
  try {
    const { adapter, report } = convertLoralibToPeft(ckpt);
    const d = describeAdapter(adapter);
    const lines = [`${path}: loralib (microsoft/LoRA) checkpoint, ${ckpt.modules.size} LoRA modules${ckpt.strippedModulePrefix ? " ('module.' prefix)" : ""}`, ...report.lines.map((l) => `  ${l}`), `  as PEFT:`, ...moduleLines(withLoraBias(adapter, d.modules))];
    return { format: "loralib", path, replacesWeightsListing: false, json: { format: "loralib", preset: report.resolved.preset?.name ?? null, r: report.resolved.r, alpha: report.resolved.alpha, enableLora: report.resolved.enableLora ?? null, modules: d.modules, headTensors: report.headTensors }, text: `${lines.join("\n")}\n` };
  } catch (err) {
    if (!(err instanceof LoraportError)) throw err;
    // No preset fits: still list what the file says (rank per block is not knowable without one).
    const mods = [...ckpt.modules].map(([n, m]) => `    ${n}: lora_A [${m.A.shape.join(", ")}], lora_B [${m.B.shape.join(", ")}]`);
    return { format: "loralib", path, replacesWeightsListing: false, json: { format: "loralib", preset: null, note: err.message }, text: `${path}: loralib checkpoint, ${ckpt.modules.size} LoRA modules; ${err.message}\n${mods.join("\n")}\n` };
  }
}
