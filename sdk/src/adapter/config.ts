/**
 * PEFT's `LoraConfig` (0.21): every key PEFT writes, parsed with errors naming the key, per-module rank
 * and scaling resolved with PEFT's matching rules, variants loraport does not implement refused, and
 * serialised byte-for-byte as PEFT writes it (json.dumps(indent=2, sort_keys=True), no trailing newline).
 */
import { AdapterError, FormatError, UnsupportedFeatureError } from "../errors.js";
import { dumpsPy, parsePyJson, type JsonPath, type JsonValue } from "./pyjson.js";

export type TargetModules = readonly string[] | string | null;

/** The LoRA config, keys as PEFT names them. */
export interface LoraConfig {
  readonly peft_type: "LORA";
  readonly task_type: string | null;
  readonly auto_mapping: JsonValue;
  readonly peft_version: string | null;
  readonly base_model_name_or_path: string | null;
  readonly revision: string | null;
  readonly inference_mode: boolean;
  readonly r: number;
  readonly target_modules: TargetModules;
  readonly exclude_modules: TargetModules;
  readonly lora_alpha: number;
  readonly lora_dropout: number;
  readonly fan_in_fan_out: boolean;
  readonly bias: "none" | "all" | "lora_only";
  readonly use_rslora: boolean;
  readonly modules_to_save: readonly string[] | null;
  readonly init_lora_weights: boolean | string;
  readonly layers_to_transform: number | readonly number[] | null;
  readonly layers_pattern: string | readonly string[] | null;
  readonly rank_pattern: Readonly<Record<string, number>>;
  readonly alpha_pattern: Readonly<Record<string, number>>;
  readonly megatron_config: JsonValue;
  readonly megatron_core: string | null;
  readonly trainable_token_indices: JsonValue;
  readonly loftq_config: JsonValue;
  readonly eva_config: JsonValue;
  readonly corda_config: JsonValue;
  readonly lora_ga_config: JsonValue;
  readonly use_dora: boolean;
  readonly velora_config: JsonValue;
  readonly alora_invocation_tokens: JsonValue;
  readonly use_qalora: boolean;
  readonly qalora_group_size: number;
  readonly monteclora_config: JsonValue;
  readonly layer_replication: JsonValue;
  readonly lora_bias: boolean;
  readonly target_parameters: JsonValue;
  readonly use_bdlora: JsonValue;
  readonly arrow_config: JsonValue;
  readonly kasa_config: JsonValue;
  readonly ensure_weight_tying: boolean;
  /** Keys PEFT 0.21 does not know, kept as read (PEFT drops them with a warning; so does `writePeftAdapter` unless asked). */
  readonly unknown: Readonly<Record<string, JsonValue>>;
  /** Paths of numbers that were (or must be written as) Python floats, e.g. `lora_alpha` when it was `16.0`. */
  readonly floatPaths: ReadonlySet<JsonPath>;
}

/** The version loraport writes in `peft_version` (the PEFT release whose format it follows). */
export const PEFT_FORMAT_VERSION = "0.21.2";

/** Defaults of `dataclasses.fields(LoraConfig)` in PEFT 0.21. */
export const LORA_CONFIG_DEFAULTS: Omit<LoraConfig, "unknown" | "floatPaths"> = {
  peft_type: "LORA",
  task_type: null,
  auto_mapping: null,
  peft_version: PEFT_FORMAT_VERSION,
  base_model_name_or_path: null,
  revision: null,
  inference_mode: false,
  r: 8,
  target_modules: null,
  exclude_modules: null,
  lora_alpha: 8,
  lora_dropout: 0.0,
  fan_in_fan_out: false,
  bias: "none",
  use_rslora: false,
  modules_to_save: null,
  init_lora_weights: true,
  layers_to_transform: null,
  layers_pattern: null,
  rank_pattern: {},
  alpha_pattern: {},
  megatron_config: null,
  megatron_core: "megatron.core",
  trainable_token_indices: null,
  loftq_config: {},
  eva_config: null,
  corda_config: null,
  lora_ga_config: null,
  use_dora: false,
  velora_config: null,
  alora_invocation_tokens: null,
  use_qalora: false,
  qalora_group_size: 16,
  monteclora_config: null,
  layer_replication: null,
  lora_bias: false,
  target_parameters: null,
  use_bdlora: null,
  arrow_config: null,
  kasa_config: null,
  ensure_weight_tying: false,
};

export const KNOWN_KEYS: readonly string[] = Object.keys(LORA_CONFIG_DEFAULTS);

/** Fields PEFT types as float, always written in float style. */
const ALWAYS_FLOAT = new Set(["lora_dropout"]);

/** Build a config from the keys given, defaults for the rest (what `LoraConfig(**kwargs)` does). */
export function loraConfig(fields: Partial<Omit<LoraConfig, "floatPaths" | "unknown">> & { floatPaths?: Iterable<JsonPath> } = {}): LoraConfig {
  const { floatPaths, ...rest } = fields;
  const config: LoraConfig = { ...LORA_CONFIG_DEFAULTS, ...rest, unknown: {}, floatPaths: new Set(floatPaths ?? []) };
  validateConfig(config, "LoraConfig");
  return config;
}

export interface ParsedConfig {
  readonly config: LoraConfig;
  /** Human-readable notes, one per unknown key or auto-correction (as PEFT warns). */
  readonly warnings: readonly string[];
}

/** Parse `adapter_config.json` text. Errors name the file and key. */
export function parseLoraConfig(text: string, file = "adapter_config.json"): ParsedConfig {
  const doc = parsePyJson(text, file);
  if (doc.value === null || typeof doc.value !== "object" || Array.isArray(doc.value)) {
    throw new FormatError(file, "expected a JSON object at the top level");
  }
  return configFromJson(doc.value, file, doc.floatPaths);
}

export function configFromJson(obj: { readonly [key: string]: JsonValue }, file: string, floatPaths: ReadonlySet<JsonPath> = new Set()): ParsedConfig {
  const warnings: string[] = [];
  if (!("peft_type" in obj)) throw new AdapterError(`${file}: key 'peft_type' is missing (expected "LORA")`);
  if (obj["peft_type"] !== "LORA") throw new UnsupportedFeatureError("peft_type", `${file}: only "LORA" adapters are supported, got ${JSON.stringify(obj["peft_type"])}`);
  const known: Record<string, JsonValue> = {};
  const unknown: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (Object.hasOwn(LORA_CONFIG_DEFAULTS, k)) known[k] = v;
    else if (k === "runtime_config") warnings.push(`${file}: 'runtime_config' is never saved by PEFT; dropped`);
    else {
      unknown[k] = v;
      warnings.push(`${file}: unknown key '${k}' (not a PEFT 0.21 LoraConfig field); kept, not used`);
    }
  }
  const config = { ...LORA_CONFIG_DEFAULTS, ...known, unknown, floatPaths } as LoraConfig;
  validateConfig(config, file);
  return { config, warnings };
}

const isStrList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Type-check every implemented key, then refuse variants loraport does not implement. */
export function validateConfig(c: LoraConfig, file: string): void {
  const bad = (key: string, expected: string): never => {
    throw new AdapterError(`${file}: key '${key}' must be ${expected}, got ${JSON.stringify((c as unknown as Record<string, unknown>)[key])}`, { code: "E_CONFIG" });
  };
  if (!Number.isInteger(c.r) || c.r <= 0) bad("r", "a positive integer");
  if (!isNum(c.lora_alpha)) bad("lora_alpha", "a number");
  if (!isNum(c.lora_dropout) || c.lora_dropout < 0 || c.lora_dropout > 1) bad("lora_dropout", "a number in [0, 1]");
  for (const key of ["target_modules", "exclude_modules"] as const) {
    const v = c[key];
    if (v !== null && typeof v !== "string" && !isStrList(v)) bad(key, "null, a string (regex) or a list of strings");
  }
  if (c.modules_to_save !== null && !isStrList(c.modules_to_save)) bad("modules_to_save", "null or a list of strings");
  for (const key of ["fan_in_fan_out", "use_rslora", "use_dora", "lora_bias", "inference_mode", "use_qalora", "ensure_weight_tying"] as const) {
    if (typeof c[key] !== "boolean") bad(key, "true or false");
  }
  if (!["none", "all", "lora_only"].includes(c.bias)) bad("bias", `"none", "all" or "lora_only"`);
  for (const key of ["rank_pattern", "alpha_pattern"] as const) {
    const v = c[key] as unknown;
    if (v === null || typeof v !== "object" || Array.isArray(v)) bad(key, "an object {pattern: number}");
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (!isNum(x) || (key === "rank_pattern" && (!Number.isInteger(x) || x <= 0))) {
        throw new AdapterError(`${file}: key '${key}' entry '${k}' must be ${key === "rank_pattern" ? "a positive integer" : "a number"}, got ${JSON.stringify(x)}`, { code: "E_CONFIG" });
      }
    }
  }
  if (c.task_type !== null && typeof c.task_type !== "string") bad("task_type", "null or a string");
  if (typeof c.init_lora_weights !== "boolean" && typeof c.init_lora_weights !== "string") bad("init_lora_weights", "true, false or a method name");
  refuseUnimplemented(c, file);
}

/** Inits after which the adapter only fits a modified (residual) base: applying them to the original base is wrong. */
const WEIGHT_MUTATING_INIT = /^(pissa(_niter_\d+)?|olora|corda|loftq|lora_ga|kasa)$/;

function refuseUnimplemented(c: LoraConfig, file: string): void {
  const set = (v: JsonValue): boolean => v !== null && v !== false && !(Array.isArray(v) && v.length === 0);
  const refuse = (key: string, what: string): never => {
    throw new UnsupportedFeatureError(key, `${file}: ${what} is not implemented by loraport; refusing rather than applying the adapter wrongly`);
  };
  if (set(c.alora_invocation_tokens)) refuse("alora_invocation_tokens", "activated LoRA (aLoRA)");
  if (c.use_qalora) refuse("use_qalora", "QA-LoRA (pooled inputs)");
  if (set(c.use_bdlora)) refuse("use_bdlora", "block-diagonal LoRA");
  if (set(c.arrow_config)) refuse("arrow_config", "Arrow routing");
  if (set(c.kasa_config)) refuse("kasa_config", "KaSA");
  if (set(c.monteclora_config)) refuse("monteclora_config", "MonteCLoRA");
  if (set(c.layer_replication)) refuse("layer_replication", "layer replication");
  if (set(c.target_parameters)) refuse("target_parameters", "LoRA on raw parameters (target_parameters)");
  if (set(c.megatron_config)) refuse("megatron_config", "Megatron parallel layers");
  if (typeof c.init_lora_weights === "string" && WEIGHT_MUTATING_INIT.test(c.init_lora_weights)) {
    refuse("init_lora_weights", `init "${c.init_lora_weights}" changes the base weights (convert it to plain LoRA with PEFT's path_initial_model_for_weight_conversion first)`);
  }
  if (c.init_lora_weights === "mica") refuse("init_lora_weights", `the "mica" variant`);
  // PEFT's LoraConfig raises on this pair; merging both would move a bias no PEFT model has.
  if (c.lora_bias && c.use_dora) throw new UnsupportedFeatureError("lora_bias", `${file}: lora_bias=true with use_dora=true, which PEFT refuses ("lora_bias=True is not supported for DoRA")`);
}

// ---- per-module rank and scaling -----------------------------------------------------------------

/** Python regex → JS: named groups `(?P<x>` become `(?<x>`; `(?P=x)` back-references become `\k<x>`. */
function pyRegex(pattern: string, flags = ""): RegExp {
  return new RegExp(pattern.replace(/\(\?P<(\w+)>/g, "(?<$1>").replace(/\(\?P=(\w+)\)/g, "\\k<$1>"), flags);
}

/** PEFT's `get_pattern_key`: first key (in insertion order) with `re.match(rf"(.*\.)?({key})$", name)`. */
export function matchPatternKey(patternKeys: Iterable<string>, moduleName: string): string | undefined {
  for (const key of patternKeys) {
    if (pyRegex(`^(.*\\.)?(${key})$`).test(moduleName)) return key;
  }
  return undefined;
}

export interface ResolvedModule {
  readonly r: number;
  readonly alpha: number;
  /** alpha / r, or alpha / √r with rsLoRA (a float64, as Python computes it). */
  readonly scaling: number;
}

/** Rank, alpha and scaling of one module (module name without `base_model.model.`), as PEFT resolves them. */
export function resolveModule(config: LoraConfig, moduleName: string): ResolvedModule {
  const rKey = matchPatternKey(Object.keys(config.rank_pattern), moduleName);
  const aKey = matchPatternKey(Object.keys(config.alpha_pattern), moduleName);
  const r = rKey === undefined ? config.r : config.rank_pattern[rKey]!;
  const alpha = aKey === undefined ? config.lora_alpha : config.alpha_pattern[aKey]!;
  return { r, alpha, scaling: config.use_rslora ? alpha / Math.sqrt(r) : alpha / r };
}

/** PEFT's target matching: a string is a regex full match; a list matches the exact name or a `.entry` suffix. */
export function matchesTarget(targets: TargetModules, moduleName: string): boolean {
  if (targets === null) return false;
  if (typeof targets === "string") return pyRegex(`^(?:${targets})$`).test(moduleName);
  return targets.some((t) => moduleName === t || moduleName.endsWith(`.${t}`));
}

/** Whether PEFT would put LoRA on this module (targets, minus excludes and modules_to_save). */
export function isTargeted(config: LoraConfig, moduleName: string): boolean {
  if (config.exclude_modules !== null && matchesTarget(config.exclude_modules, moduleName)) return false;
  if (config.modules_to_save?.some((m) => pyRegex(`(^|.*\\.)${m}($|\\..*)`).test(moduleName))) return false;
  return matchesTarget(config.target_modules, moduleName);
}

// ---- serialisation ---------------------------------------------------------------------------------

export interface SerializeOptions {
  /** Also write keys PEFT does not know (PEFT will warn on load). Default false. */
  readonly keepUnknown?: boolean;
}

/** The config as PEFT's `save_pretrained` writes it: inference_mode forced true, auto_mapping only without a task type, target lists sorted. */
export function serializeLoraConfig(config: LoraConfig, options: SerializeOptions = {}): string {
  const obj: Record<string, JsonValue> = {};
  for (const key of KNOWN_KEYS) obj[key] = (config as unknown as Record<string, JsonValue>)[key] ?? null;
  obj["inference_mode"] = true;
  if (config.task_type !== null) obj["auto_mapping"] = null;
  // PEFT writes target lists from a Python set (hash order); sorted is one valid order and deterministic.
  for (const key of ["target_modules", "exclude_modules"] as const) {
    const v = config[key];
    if (Array.isArray(v)) obj[key] = [...new Set(v as string[])].sort();
  }
  if (options.keepUnknown) Object.assign(obj, config.unknown);
  const floats = new Set(config.floatPaths);
  for (const k of ALWAYS_FLOAT) floats.add(k);
  return dumpsPy(obj, floats);
}
