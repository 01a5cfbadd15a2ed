/**
 * Chat templates rendered with @huggingface/jinja the way transformers' `apply_chat_template(tokenize=False)`
 * renders them with jinja2: the same variables (messages with None-valued keys dropped, tools, documents,
 * add_generation_prompt, every named special token, then the caller's extra variables), trim_blocks and
 * lstrip_blocks, `raise_exception`, and Python's `strftime` (C locale) for `strftime_now`.
 */
import { Environment, Interpreter, Template } from "@huggingface/jinja";
import { TokenizerError } from "./errors.js";
import type { ChatMessage, ChatTemplateOptions } from "./types.js";

/** transformers' `_REASONING_FIELDS`: a message's reasoning, under whichever name it came, is given under all. */
const REASONING = ["reasoning_content", "thinking", "reasoning"];

function normalizeMessage(message: ChatMessage): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(message)) if (v !== null && v !== undefined) out[k] = v;
  const key = REASONING.find((k) => out[k] !== undefined);
  return key === undefined ? out : { thinking: out[key], ...out, reasoning_content: out[key] };
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

/** Python's `datetime.now().strftime(format)` in the C locale, for the directives templates use. */
export function strftime(date: Date, format: string): string {
  const pad = (n: number, w = 2): string => String(n).padStart(w, "0");
  const dayOfYear = Math.floor((Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - Date.UTC(date.getFullYear(), 0, 1)) / 86_400_000) + 1;
  return format.replace(/%(-?)([a-zA-Z%])/g, (whole, minus: string, d: string) => {
    const num = (n: number, w = 2): string => (minus ? String(n) : pad(n, w));
    switch (d) {
      case "Y": return String(date.getFullYear());
      case "y": return pad(date.getFullYear() % 100);
      case "m": return num(date.getMonth() + 1);
      case "d": return num(date.getDate());
      case "e": return String(date.getDate()).padStart(2, " ");
      case "j": return num(dayOfYear, 3);
      case "H": return num(date.getHours());
      case "I": return num(date.getHours() % 12 || 12);
      case "M": return num(date.getMinutes());
      case "S": return num(date.getSeconds());
      case "p": return date.getHours() < 12 ? "AM" : "PM";
      case "b": return MONTHS[date.getMonth()]!.slice(0, 3);
      case "B": return MONTHS[date.getMonth()]!;
      case "a": return DAYS[date.getDay()]!.slice(0, 3);
      case "A": return DAYS[date.getDay()]!;
      case "%": return "%";
      default: return whole;
    }
  });
}

/** What @huggingface/jinja's setupGlobals declares (not exported), with Python's strftime for strftime_now. */
function globals(): Environment {
  const env = new Environment();
  for (const [k, v] of [["true", true], ["false", false], ["none", null], ["True", true], ["False", false], ["None", null]] as const) env.set(k, v);
  env.set("raise_exception", (message: string) => {
    throw new Error(message);
  });
  env.set("range", (start: number, stop?: number, step = 1): number[] => {
    if (stop === undefined) [start, stop] = [0, start];
    if (step === 0) throw new Error("range() arg 3 must not be zero");
    const out: number[] = [];
    for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
    return out;
  });
  env.set("strftime_now", (format: string) => strftime(new Date(), format));
  return env;
}

export interface ChatTemplateSource {
  dir: string;
  templates: string | Record<string, string> | null;
  specialTokens: Readonly<Record<string, string>>;
}

/** The template transformers' `get_chat_template` would pick. */
export function pickTemplate(source: ChatTemplateSource, options: ChatTemplateOptions): string {
  const { templates } = source;
  if (templates !== null && typeof templates === "object") {
    if (options.template !== undefined) return templates[options.template] ?? options.template;
    if (options.tools && templates["tool_use"] !== undefined) return templates["tool_use"];
    if (templates["default"] !== undefined) return templates["default"];
    throw new TokenizerError(`${source.dir}: the tokenizer has several chat templates and none is named "default"; pick one with { template: ${Object.keys(templates).map((n) => JSON.stringify(n)).join(" | ")} }`, { code: "E_NO_CHAT_TEMPLATE" });
  }
  if (options.template !== undefined) return options.template;
  if (templates === null) {
    throw new TokenizerError(`${source.dir}: the tokenizer has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); pass one with { template }`, { code: "E_NO_CHAT_TEMPLATE" });
  }
  return templates;
}

/** Renders `messages`; `compiled` caches parsed templates by source. */
export function renderChatTemplate(source: ChatTemplateSource, compiled: Map<string, Template>, messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
  if (messages.length === 0) throw new TokenizerError("applyChatTemplate: the conversation is empty; give at least one message", { code: "E_CHAT_TEMPLATE" });
  const text = pickTemplate(source, options);
  let template = compiled.get(text);
  if (!template) {
    try {
      template = new Template(text);
    } catch (err) {
      throw new TokenizerError(`${source.dir}: the chat template does not parse: ${(err as Error).message}`, { code: "E_CHAT_TEMPLATE", cause: err });
    }
    compiled.set(text, template);
  }
  try {
    // The globals live in a parent scope so that the variables (jinja2: render() kwargs) can shadow them;
    // `Template.render` declares both in one scope and refuses any overlap, strftime_now included.
    const env = new Environment(globals());
    const variables = {
      ...source.specialTokens,
      ...options.variables,
      messages: messages.map(normalizeMessage),
      tools: options.tools ?? null,
      documents: options.documents ?? null,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    };
    for (const [k, v] of Object.entries(variables)) env.set(k, v);
    return (new Interpreter(env).run(template.parsed) as { value: string }).value;
  } catch (err) {
    // raise_exception(...) in a template arrives here too, with the template's own message.
    throw new TokenizerError(`${source.dir}: chat template: ${(err as Error).message}`, { code: "E_CHAT_TEMPLATE", cause: err });
  }
}
