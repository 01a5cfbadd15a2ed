/**
 * Builds the tokenizer fixtures of a test run: fixtures/make_tokenizers.py trains every tokenizer kind with the
 * Python `tokenizers` library on a seeded corpus and records Python's answers (tokenizers and transformers) for
 * the seeded test strings and conversations, in the same run.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChatMessage } from "../../src/tokenizer/index.js";
import { runPython } from "../helpers/python.js";
import { testStrings, trainingCorpus } from "./strings.js";

export const MAKE_TOKENIZERS = join(import.meta.dirname, "fixtures/make_tokenizers.py");

export interface Conversation {
  messages: ChatMessage[];
  tools?: Record<string, unknown>[];
  kwargs?: Record<string, unknown>;
}

export interface ChatReference { conversation: number; add_generation_prompt: boolean; template?: string; text?: string; ids?: number[]; error?: string }

export interface TokenizerReference {
  folder: string;
  ids: number[][];
  ids_plain: number[][];
  hf_ids: number[][];
  decode: string[];
  decode_skip: string[];
  hf_decode: string[];
  rand_ids: number[][];
  rand_decode: string[];
  rand_decode_skip: string[];
  vocab_size: number;
  hf_len: number;
  vocab: Record<string, number>;
  bos_token_id: number | null;
  eos_token_id: number | null;
  pad_token_id: number | null;
  unk_token_id: number | null;
  special_tokens_map: Record<string, string>;
  has_chat_template: boolean;
  chat: ChatReference[];
}

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city — «quoted», 日本語 too",
    parameters: { type: "object", properties: { city: { type: "string", description: "City name" }, unit: { type: "string", enum: ["c", "f"] } }, required: ["city"] },
  },
};

/** System/user/assistant, multi-turn, whitespace to trim, unicode, tools, an extra template variable, a bad role order. */
export const CONVERSATIONS: Conversation[] = [
  { messages: [{ role: "user", content: "Hello!" }] },
  {
    messages: [
      { role: "system", content: "You are a terse assistant." },
      { role: "user", content: "What is 2+2?" },
      { role: "assistant", content: "4" },
      { role: "user", content: "And 3+3?" },
    ],
  },
  {
    messages: [
      { role: "system", content: "  Système: réponds en français.\n" },
      { role: "user", content: "\n  Ça va ? 😀 日本語 <|eot_id|> [INST]  \n" },
      { role: "assistant", content: " Très bien, merci !  " },
    ],
  },
  { messages: [{ role: "user", content: "Tell me a joke." }, { role: "assistant", content: "Why did the tokenizer split? It saw a space." }] },
  { messages: [{ role: "user", content: "What day is it?" }], kwargs: { date_string: "01 Dec 2026" } },
  {
    messages: [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: "get_weather", arguments: { city: "Paris", unit: "c" } } }] },
      { role: "tool", content: "{\"temp\": 21}" },
      { role: "tool", content: "{\"humidity\": 0.4}" },
      { role: "assistant", content: "21 °C in Paris." },
    ],
    tools: [weather],
  },
  { messages: [{ role: "assistant", content: "I speak first." }, { role: "user", content: "That breaks alternation." }] },
  { messages: [{ role: "user", content: "" }] },
];

export interface Fixtures {
  strings: string[];
  reference: Record<string, TokenizerReference>;
}

/** Trains the tokenizers into `dir` and returns the strings with Python's reference answers. */
export function makeFixtures(dir: string, options: { strings?: number; only?: string[] } = {}): Fixtures {
  const strings = testStrings(20260, options.strings ?? 1200);
  const spec = join(dir, "spec.json");
  writeFileSync(spec, JSON.stringify({ corpus: trainingCorpus(7, 2500), strings, conversations: CONVERSATIONS, ...(options.only ? { only: options.only } : {}) }));
  runPython(`import runpy, sys; sys.argv = ["make_tokenizers.py", sys.argv[1], sys.argv[2]]; runpy.run_path(${JSON.stringify(MAKE_TOKENIZERS)}, run_name="__main__")`, [spec, dir]);
  const reference = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as Record<string, TokenizerReference>;
  return { strings, reference };
}
