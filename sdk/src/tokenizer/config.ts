/**
 * The files beside tokenizer.json that transformers reads, and what it takes from each: named special tokens
 * (tokenizer_config.json, or the legacy special_tokens_map.json), chat templates (chat_template.jinja and
 * additional_chat_templates/*.jinja before tokenizer_config.json's `chat_template`), the decode clean-up flag,
 * and extra end-of-sequence ids from generation_config.json.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { FormatError } from "../errors.js";

/** The subset of tokenizer.json this module reads itself (the native library reads all of it). */
export interface TokenizerJson {
  added_tokens?: { id: number; content: string; special: boolean }[];
  model?: { type?: string };
  decoder?: unknown;
}

export interface TokenizerFolder {
  file: string;
  text: string;
  json: TokenizerJson;
  /** transformers' `special_tokens_map`: name → token string. */
  specialTokens: Record<string, string>;
  /** One template, named templates, or none. */
  chatTemplates: string | Record<string, string> | null;
  /** tokenizer_config.json's `clean_up_tokenization_spaces` (transformers 5 defaults it to false). */
  cleanUpTokenizationSpaces: boolean;
  /** generation_config.json's `eos_token_id`, as a list. */
  generationEosIds: number[];
}

// transformers' SPECIAL_TOKENS_ATTRIBUTES; other `*_token` keys are model-specific special tokens.
const NAMED = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

function readJsonObject(file: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new FormatError(file, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new FormatError(file, "expected a JSON object");
  return doc as Record<string, unknown>;
}

/** A special token is written as a string or as an AddedToken object (`{"content": ..., ...}`). */
function tokenString(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null && typeof (value as { content?: unknown }).content === "string") return (value as { content: string }).content;
  return undefined;
}

function collectSpecialTokens(into: Record<string, string>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    if (!NAMED.includes(key) && !key.endsWith("_token")) continue;
    const token = tokenString(value);
    if (token !== undefined) into[key] = token;
    else if (value === null) delete into[key];
  }
  const extra = source["extra_special_tokens"];
  if (typeof extra === "object" && extra !== null && !Array.isArray(extra)) collectSpecialTokens(into, extra as Record<string, unknown>);
}

function configTemplates(file: string, value: unknown): string | Record<string, string> | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  // The older form of several templates: [{"name": ..., "template": ...}].
  if (Array.isArray(value)) {
    const out: Record<string, string> = {};
    for (const entry of value) {
      const { name, template } = (entry ?? {}) as { name?: unknown; template?: unknown };
      if (typeof name !== "string" || typeof template !== "string") throw new FormatError(file, "chat_template: expected a string or a list of {name, template} strings");
      out[name] = template;
    }
    return out;
  }
  throw new FormatError(file, "chat_template: expected a string or a list of {name, template} strings");
}

/** Reads `<dir>/tokenizer.json` (required; checked by the caller) and every companion file that is present. */
export function readTokenizerFolder(dir: string): TokenizerFolder {
  const file = join(dir, "tokenizer.json");
  const text = readFileSync(file, "utf8");
  let json: TokenizerJson;
  try {
    json = JSON.parse(text) as TokenizerJson;
  } catch (err) {
    throw new FormatError(file, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new FormatError(file, "expected a JSON object");
  if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) throw new FormatError(file, "added_tokens: expected a list");

  const configFile = join(dir, "tokenizer_config.json");
  const config = existsSync(configFile) ? readJsonObject(configFile) : {};
  const specialTokens: Record<string, string> = {};
  collectSpecialTokens(specialTokens, config);
  // transformers reads special_tokens_map.json only when tokenizer_config.json has no added_tokens_decoder,
  // and then its entries win.
  const mapFile = join(dir, "special_tokens_map.json");
  if (config["added_tokens_decoder"] === undefined && existsSync(mapFile)) collectSpecialTokens(specialTokens, readJsonObject(mapFile));

  let chatTemplates = configTemplates(configFile, config["chat_template"]);
  const files: Record<string, string> = {};
  const jinja = join(dir, "chat_template.jinja");
  if (existsSync(jinja)) files["default"] = readFileSync(jinja, "utf8");
  const extraDir = join(dir, "additional_chat_templates");
  if (existsSync(extraDir)) {
    for (const name of readdirSync(extraDir).filter((n) => n.endsWith(".jinja")).sort()) files[basename(name, ".jinja")] = readFileSync(join(extraDir, name), "utf8");
  }
  const names = Object.keys(files);
  if (names.length === 1 && names[0] === "default") chatTemplates = files["default"]!;
  else if (names.length > 0) chatTemplates = files;

  const generationEosIds: number[] = [];
  const genFile = join(dir, "generation_config.json");
  if (existsSync(genFile)) {
    const eos = readJsonObject(genFile)["eos_token_id"];
    for (const id of Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos]) {
      if (!Number.isInteger(id) || (id as number) < 0) throw new FormatError(genFile, `eos_token_id: expected a token id or a list of them, got ${JSON.stringify(eos)}`);
      generationEosIds.push(id as number);
    }
  }

  return { file, text, json, specialTokens, chatTemplates, cleanUpTokenizationSpaces: config["clean_up_tokenization_spaces"] === true, generationEosIds };
}
