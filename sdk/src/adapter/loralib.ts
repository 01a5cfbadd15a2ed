/**
 * loralib checkpoints (microsoft/LoRA): `<module>.lora_A` / `<module>.lora_B` raw parameters, an optional
 * DistributedDataParallel `module.` prefix, an optional `model_state_dict` wrapper, and whatever else the
 * script saved whole (classification heads). No hyper-parameters are stored: they come from a preset,
 * picked from the key pattern when unambiguous, or from the caller.
 */
import { AdapterError } from "../errors.js";
import type { Tensor } from "../tensor/index.js";
import { LORALIB_PRESETS, presetByName, type LoralibPreset } from "./presets.js";
import { loadTorchStateDict } from "./torch-state.js";

export interface LoralibModuleTensors {
  readonly A: Tensor;
  readonly B: Tensor;
}

export interface LoralibCheckpoint {
  readonly file: string;
  /** LoRA factors by module path (prefix stripped). */
  readonly modules: ReadonlyMap<string, LoralibModuleTensors>;
  /** Every other tensor (e.g. `classifier.dense.weight`), by key (prefix stripped). */
  readonly other: ReadonlyMap<string, Tensor>;
  /** Whether keys carried the DDP `module.` prefix. */
  readonly strippedModulePrefix: boolean;
}

/** Group a loralib state dict into modules. */
export function loralibFromStateDict(file: string, state: ReadonlyMap<string, Tensor>): LoralibCheckpoint {
  const modules = new Map<string, { A?: Tensor; B?: Tensor }>();
  const other = new Map<string, Tensor>();
  let stripped = false;
  for (const [raw, t] of state) {
    let key = raw;
    if (key.startsWith("module.")) {
      key = key.slice("module.".length);
      stripped = true;
    }
    const m = /^(.*)\.lora_([AB])$/.exec(key);
    if (!m) {
      other.set(key, t);
      continue;
    }
    const name = m[1]!;
    const slot = m[2] as "A" | "B";
    const entry = modules.get(name) ?? {};
    if (entry[slot]) throw new AdapterError(`${file}: ${name}.lora_${slot} appears twice (with and without the 'module.' prefix?)`);
    if (t.shape.length !== 2) throw new AdapterError(`${file}: ${key} has shape [${t.shape.join(", ")}]; loralib Linear/MergedLinear/Embedding/ConvLoRA factors are 2-D`);
    entry[slot] = t;
    modules.set(name, entry);
  }
  const out = new Map<string, LoralibModuleTensors>();
  for (const [name, e] of modules) {
    if (!e.A || !e.B) throw new AdapterError(`${file}: module ${name} has lora_${e.A ? "A" : "B"} but no lora_${e.A ? "B" : "A"}`);
    out.set(name, { A: e.A, B: e.B });
  }
  if (out.size === 0) throw new AdapterError(`${file}: no '<module>.lora_A' / '<module>.lora_B' keys: not a loralib checkpoint`);
  return { file, modules: out, other, strippedModulePrefix: stripped };
}

/** Read a loralib checkpoint (.pt/.bin torch zip) through the safe torch reader. */
export async function readLoralibCheckpoint(path: string): Promise<LoralibCheckpoint> {
  return loralibFromStateDict(path, await loadTorchStateDict(path));
}

/** Whether a state dict looks like a loralib checkpoint (bare `.lora_A`/`.lora_B` keys, no PEFT `.weight`). */
export function isLoralibStateDict(keys: Iterable<string>): boolean {
  let any = false;
  for (const k of keys) {
    if (/\.lora_[AB]$/.test(k)) any = true;
    if (/\.lora_[AB]\.weight$/.test(k)) return false;
  }
  return any;
}

export interface LoralibOptions {
  readonly preset?: string;
  readonly r?: number;
  readonly alpha?: number;
  /** MergedLinear blocks, e.g. [true, false, true]; `[]` forces plain lora.Linear. */
  readonly enableLora?: readonly boolean[];
  readonly fanInFanOut?: boolean;
  readonly baseModel?: string;
  /** Modules that are `lora.Embedding` (default: recognised by name, e.g. `transformer.wte`). */
  readonly embeddings?: readonly string[];
  /**
   * The base's weight shape for a module (`<module>.weight`), when a base model is given: tells loralib ConvLoRA
   * modules with 1×…×1 kernels (Conv1d/Conv3d) from lora.Linear, and grouped convs from plain ones.
   */
  readonly baseWeightShape?: (module: string) => readonly number[] | undefined;
}

/** The hyper-parameters a conversion runs with, and where each came from (always reported). */
export interface ResolvedLoralib {
  readonly preset: LoralibPreset | undefined;
  /** "given" (--preset), "detected from keys", or "none". */
  readonly presetSource: "given" | "detected from keys" | "none";
  readonly r: number;
  readonly alpha: number;
  readonly enableLora: readonly boolean[] | undefined;
  readonly fanInFanOut: boolean;
  readonly headModules: readonly string[];
  readonly taskType: string | null;
  readonly baseModel: string | null;
  readonly targets: readonly string[];
  readonly notes: readonly string[];
}

/** Presets whose key pattern and width fit the checkpoint. */
export function matchingPresets(ckpt: LoralibCheckpoint): LoralibPreset[] {
  const names = [...ckpt.modules.keys()];
  return LORALIB_PRESETS.filter((p) => names.every((n) => p.keyPattern.test(`${n}.lora_A`)) && [...ckpt.modules.values()].every((m) => m.A.shape[1] === p.hidden));
}

/** Pick hyper-parameters: flags win over the preset; the preset is given or detected when exactly one fits. */
export function resolveLoralibOptions(ckpt: LoralibCheckpoint, opts: LoralibOptions = {}): ResolvedLoralib {
  let preset: LoralibPreset | undefined;
  let presetSource: ResolvedLoralib["presetSource"] = "none";
  const notes: string[] = [];
  if (opts.preset !== undefined) {
    preset = presetByName(opts.preset);
    if (!preset) throw new AdapterError(`unknown preset '${opts.preset}'; known: ${LORALIB_PRESETS.map((p) => p.name).join(", ")}`, { code: "E_PRESET" });
    presetSource = "given";
  } else {
    const fits = matchingPresets(ckpt);
    if (fits.length === 1) {
      preset = fits[0];
      presetSource = "detected from keys";
    } else if (opts.r === undefined || opts.alpha === undefined) {
      const why = fits.length === 0 ? "no preset matches its keys and widths" : `several presets match (${fits.map((p) => p.name).join(", ")})`;
      throw new AdapterError(`${ckpt.file}: ${why}; pass --preset NAME or give --r and --alpha (and --enable-lora for fused projections)`, { code: "E_PRESET" });
    }
  }
  if (preset?.note && opts.alpha === undefined && opts.r === undefined) notes.push(preset.note);
  const r = opts.r ?? preset?.r;
  const alpha = opts.alpha ?? preset?.alpha;
  if (r === undefined || alpha === undefined) throw new AdapterError(`${ckpt.file}: r and alpha are needed`, { code: "E_PRESET" });
  if (!Number.isInteger(r) || r <= 0) throw new AdapterError(`--r must be a positive integer, got ${r}`);
  if (!Number.isFinite(alpha)) throw new AdapterError(`--alpha must be a number, got ${alpha}`);
  const enableLora = opts.enableLora !== undefined ? (opts.enableLora.length ? opts.enableLora : undefined) : preset?.enableLora;
  const fanInFanOut = opts.fanInFanOut ?? preset?.fanInFanOut ?? false;
  const targets = preset?.targets ?? [...new Set([...ckpt.modules.keys()].map((n) => n.split(".").pop()!))].sort();
  const headModules = preset?.headModules.filter((h) => [...ckpt.other.keys()].some((k) => k.startsWith(`${h}.`))) ?? [...new Set([...ckpt.other.keys()].map((k) => k.split(".")[0]!))].sort();
  const taskType = preset?.taskType ?? (headModules.length ? "SEQ_CLS" : null);
  return { preset, presetSource, r, alpha, enableLora, fanInFanOut, headModules, taskType, baseModel: opts.baseModel ?? preset?.baseModel ?? null, targets, notes };
}

/** Parse `--enable-lora`: `q,v` (of q,k,v) or `1,0,1` / `true,false,true`. */
export function parseEnableLora(text: string): boolean[] {
  const parts = text.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (parts.length === 0) throw new AdapterError(`--enable-lora: empty`);
  if (parts.every((p) => ["0", "1", "true", "false"].includes(p))) return parts.map((p) => p === "1" || p === "true");
  if (parts.every((p) => ["q", "k", "v"].includes(p))) return ["q", "k", "v"].map((x) => parts.includes(x));
  throw new AdapterError(`--enable-lora '${text}': expected letters of q,k,v (e.g. q,v) or flags (e.g. 1,0,1)`);
}
