/**
 * PEFT adapter folders: `adapter_config.json` + `adapter_model.safetensors` (or `adapter_model.bin`).
 * Reading accepts keys with or without `base_model.model.` and mixed F32/F16/BF16; writing uses PEFT's
 * layout (prefixed keys, config as PEFT serialises it) so `PeftModel.from_pretrained` loads it cleanly.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { AdapterError, FileMissingError, FormatError, UnsupportedFeatureError } from "../errors.js";
import { readSafetensors, writeSafetensors } from "../formats/safetensors/index.js";
import { writeFileAtomic, writeAll } from "../formats/atomic-file.js";
import type { Tensor } from "../tensor/index.js";
import { convKindForSpatialDims, validateAdapter, type LoraAdapter, type LoraModule, type LoraModuleKind } from "./adapter.js";
import { parseLoraConfig, serializeLoraConfig, type LoraConfig, type SerializeOptions } from "./config.js";
import { loadTorchStateDict } from "./torch-state.js";

export const PEFT_PREFIX = "base_model.model.";
export const CONFIG_FILE = "adapter_config.json";
export const SAFETENSORS_FILE = "adapter_model.safetensors";
export const BIN_FILE = "adapter_model.bin";

export interface ReadAdapterResult {
  readonly adapter: LoraAdapter;
  /** Notes as PEFT would warn them: unknown config keys, keys without the prefix, ... */
  readonly warnings: readonly string[];
  /** The weights file that was read. */
  readonly weightsFile: string;
}

/** Read a PEFT LoRA adapter folder. */
export async function readPeftAdapter(dir: string): Promise<ReadAdapterResult> {
  const configPath = join(dir, CONFIG_FILE);
  if (!existsSync(dir)) throw new FileMissingError(dir, `${dir}: adapter folder not found`);
  if (!existsSync(configPath)) throw new FileMissingError(configPath, `${configPath}: not a PEFT adapter folder (no ${CONFIG_FILE})`);
  const { config, warnings } = parseLoraConfig(await readFile(configPath, "utf8"), configPath);
  const st = join(dir, SAFETENSORS_FILE);
  const bin = join(dir, BIN_FILE);
  let tensors: Map<string, Tensor>;
  let weightsFile: string;
  if (existsSync(st)) {
    tensors = (await readSafetensors(st)).tensors;
    weightsFile = st;
  } else if (existsSync(bin)) {
    tensors = await loadTorchStateDict(bin);
    weightsFile = bin;
  } else {
    throw new FileMissingError(st, `${dir}: no ${SAFETENSORS_FILE} or ${BIN_FILE} beside ${CONFIG_FILE}`);
  }
  const out = adapterFromStateDict(config, tensors, weightsFile);
  return { adapter: out.adapter, warnings: [...warnings, ...out.warnings], weightsFile };
}

const SUFFIXES: ReadonlyArray<readonly [string, "A" | "B" | "bBias" | "magnitude", boolean]> = [
  [".lora_A.weight", "A", false],
  [".lora_B.weight", "B", false],
  [".lora_B.bias", "bBias", false],
  [".lora_embedding_A", "A", true],
  [".lora_embedding_B", "B", true],
  [".lora_magnitude_vector", "magnitude", false],
  [".lora_magnitude_vector.weight", "magnitude", false],
];

/** Group a PEFT state dict into modules. `file` names the source in errors. */
export function adapterFromStateDict(config: LoraConfig, tensors: ReadonlyMap<string, Tensor>, file: string): { adapter: LoraAdapter; warnings: string[] } {
  const warnings: string[] = [];
  let unprefixed = 0;
  const parts = new Map<string, { A?: Tensor; B?: Tensor; bBias?: Tensor; magnitude?: Tensor; embedding?: boolean }>();
  const extraTensors = new Map<string, Tensor>();
  for (const [rawKey, t] of tensors) {
    let key = rawKey;
    if (key.startsWith(PEFT_PREFIX)) key = key.slice(PEFT_PREFIX.length);
    else unprefixed++;
    const hit = SUFFIXES.find(([suffix]) => key.endsWith(suffix));
    if (!hit) {
      if (/\.lora_[A-Za-z_]+(\.|$)/.test(key)) {
        throw new UnsupportedFeatureError(rawKey, `${file}: tensor '${rawKey}' is a LoRA-variant parameter loraport does not implement`);
      }
      extraTensors.set(key, t);
      continue;
    }
    const [suffix, slot, embedding] = hit;
    const module = key.slice(0, -suffix.length);
    const p = parts.get(module) ?? {};
    if (p[slot]) throw new FormatError(file, `module ${module}: '${slot}' given twice (keys with and without the prefix?)`);
    p[slot] = t;
    if (slot === "A" || slot === "B") p.embedding = embedding;
    parts.set(module, p);
  }
  if (unprefixed > 0) warnings.push(`${file}: ${unprefixed} keys lack the '${PEFT_PREFIX}' prefix (accepted; PEFT itself would silently skip them)`);
  const modules = new Map<string, LoraModule>();
  for (const [name, p] of parts) {
    if (!p.A || !p.B) throw new FormatError(file, `module ${name}: has ${p.A ? "lora_A" : "lora_B"} but no ${p.A ? "lora_B" : "lora_A"}`);
    const kind = moduleKind(config, name, p.A, Boolean(p.embedding), file);
    const m: LoraModule = { kind, A: p.A, B: p.B, ...(p.magnitude ? { magnitude: p.magnitude } : {}), ...(p.bBias ? { bBias: p.bBias } : {}) };
    modules.set(name, m);
  }
  if (config.use_dora) {
    for (const [name, m] of modules) if (!m.magnitude) throw new FormatError(file, `module ${name}: use_dora is true but lora_magnitude_vector is missing`);
  }
  const adapter: LoraAdapter = { config, modules, extraTensors };
  validateAdapter(adapter, file);
  return { adapter, warnings };
}

/**
 * The layer kind from the tensors and config. A 2-D module under `fan_in_fan_out: true` is taken as a
 * transformers Conv1D; when a model mixes Conv1D and nn.Linear targets (PEFT records true then),
 * `mergeModel` settles each module from the base weight's shape.
 */
function moduleKind(config: LoraConfig, name: string, A: Tensor, embedding: boolean, file: string): LoraModuleKind {
  if (embedding) return "embedding";
  if (A.shape.length === 2) return config.fan_in_fan_out ? "conv1d" : "linear";
  // nn.Conv1d/2d/3d: A [r, in, k…] (3-, 4- or 5-D).
  const conv = convKindForSpatialDims(A.shape.length - 2);
  if (conv) return conv;
  throw new UnsupportedFeatureError("target_modules", `${file}: module ${name}: ${A.shape.length}-D lora_A [${A.shape.join(", ")}] fits no layer PEFT adapts (Linear/Conv1D 2-D, Conv1d/2d/3d 3- to 5-D)`);
}

/** The adapter's tensors under PEFT's saved key names (prefixed). */
export function peftStateDict(adapter: LoraAdapter): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, m] of adapter.modules) {
    const base = `${PEFT_PREFIX}${name}`;
    if (m.kind === "embedding") {
      out.set(`${base}.lora_embedding_A`, m.A);
      out.set(`${base}.lora_embedding_B`, m.B);
    } else {
      out.set(`${base}.lora_A.weight`, m.A);
      out.set(`${base}.lora_B.weight`, m.B);
    }
    if (m.bBias) out.set(`${base}.lora_B.bias`, m.bBias);
    if (m.magnitude) out.set(`${base}.lora_magnitude_vector`, m.magnitude);
  }
  for (const [k, t] of adapter.extraTensors) out.set(`${PEFT_PREFIX}${k}`, t);
  return out;
}

/**
 * Write a PEFT adapter folder (created if needed): `adapter_model.safetensors` with metadata
 * `{"format": "pt"}` and `adapter_config.json`, each atomically.
 */
export async function writePeftAdapter(dir: string, adapter: LoraAdapter, options: SerializeOptions = {}): Promise<void> {
  validateAdapter(adapter, dir);
  if (adapter.modules.size === 0 && adapter.extraTensors.size === 0) throw new AdapterError(`${dir}: refusing to write an adapter with no tensors`);
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, SAFETENSORS_FILE), peftStateDict(adapter), { format: "pt" });
  const text = new TextEncoder().encode(serializeLoraConfig(adapter.config, options));
  await writeFileAtomic(join(dir, CONFIG_FILE), async (fh) => {
    await writeAll(fh, text, 0);
  });
}
