/**
 * loadTokenizer against Python, on tokenizers of every common kind trained in this run by fixtures/make_tokenizers.py
 * (byte-level BPE as GPT-2, Llama 3 and Qwen2; Llama-2-style BPE with byte fallback; SentencePiece-style Unigram
 * with Metaspace; BERT WordPiece; word-level) and 1,200+ seeded strings: ids equal `tokenizers`' encode and
 * transformers' `tokenizer(s)`; decodes equal theirs; streaming pieces concatenate to the decode and never hold
 * broken UTF-8; chat templates render as `apply_chat_template`. A failure names the string index and the first
 * differing position.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileMissingError, FormatError } from "../../src/errors.js";
import { loadTokenizer, TokenizerError, type Tokenizer } from "../../src/tokenizer/index.js";
import { tempDir } from "../helpers/python.js";
import { CONVERSATIONS, makeFixtures, type Fixtures, type TokenizerReference } from "./fixtures.js";
import { limit } from "../helpers/timeouts.js";

const NAMES = ["gpt2", "llama3", "qwen2", "llama2", "unigram", "bert", "wordlevel"] as const;
/**
 * decode(encode(x)) === x holds for byte-level BPE without a normalizer (GPT-2's `<mask>` strips the space on
 * its left by design, so strings with it are left out); Qwen2 normalizes to NFC first.
 */
const LOSSLESS: Partial<Record<(typeof NAMES)[number], { applies(s: string): boolean; expected(s: string): string }>> = {
  gpt2: { applies: (s) => !s.includes("<mask>"), expected: (s) => s },
  llama3: { applies: () => true, expected: (s) => s },
  qwen2: { applies: () => true, expected: (s) => s.normalize("NFC") },
};

const tmp = tempDir("loraport-tok-");
let fx: Fixtures;
const toks = new Map<string, Tokenizer>();

beforeAll(async () => {
  fx = makeFixtures(tmp.dir);
  for (const name of NAMES) toks.set(name, await loadTokenizer(fx.reference[name]!.folder));
}, limit(120_000));

afterAll(() => tmp.cleanup());

const show = (s: string): string => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

/** null when every row is equal; else how many differ, and the first few with index and first differing position. */
function mismatches<T extends string | readonly number[]>(what: string, actual: readonly T[], expected: readonly T[], inputs: readonly (string | readonly number[])[], source = "Python"): string | null {
  expect(actual.length).toBe(expected.length);
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const same = typeof e === "string" ? a === e : JSON.stringify(a) === JSON.stringify(e);
    if (same) continue;
    count++;
    if (bad.length >= 5) continue;
    let k = 0;
    while (k < Math.min(a.length, e.length) && a[k] === e[k]) k++;
    const input = inputs[i]!;
    const around = (x: T): string => (typeof x === "string" ? show(x.slice(k, k + 12)) : JSON.stringify(x.slice(k, k + 6)));
    bad.push(`#${i} ${typeof input === "string" ? show(input) : JSON.stringify(input.slice(0, 12))}: first difference at ${k}: got ${around(a)}, ${source} ${around(e)}`);
  }
  return count === 0 ? null : `${what}: ${count} of ${expected.length} differ\n${bad.join("\n")}`;
}

describe.each(NAMES)("%s", (name) => {
  const ref = (): TokenizerReference => fx.reference[name]!;
  const tok = (): Tokenizer => toks.get(name)!;

  it("ids equal Python tokenizers' encode and transformers' tokenizer(s), with and without special tokens", async () => {
    const { strings } = fx;
    expect(fx.strings.length).toBeGreaterThanOrEqual(1000);
    expect(mismatches("encodeBatch vs Tokenizer.encode_batch", await tok().encodeBatch(strings), ref().ids, strings)).toBeNull();
    expect(mismatches("encodeBatch vs transformers tokenizer(s)", await tok().encodeBatch(strings), ref().hf_ids, strings)).toBeNull();
    const one: number[][] = [];
    for (const s of strings) one.push(await tok().encode(s));
    expect(mismatches("encode vs Tokenizer.encode", one, ref().ids, strings)).toBeNull();
    expect(mismatches("addSpecialTokens: false", await tok().encodeBatch(strings, { addSpecialTokens: false }), ref().ids_plain, strings)).toBeNull();
  });

  it("decode equals Python (transformers' decode by default; the tokenizers library's without clean-up; skipping special tokens; random ids)", () => {
    const r = ref();
    expect(mismatches("decode vs transformers decode", r.ids.map((x) => tok().decode(x)), r.hf_decode, fx.strings)).toBeNull();
    expect(mismatches("decode (no clean-up) vs Tokenizer.decode", r.ids.map((x) => tok().decode(x, { cleanUpTokenizationSpaces: false })), r.decode, fx.strings)).toBeNull();
    expect(mismatches("decode skipSpecialTokens", r.ids.map((x) => tok().decode(x, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false })), r.decode_skip, fx.strings)).toBeNull();
    expect(mismatches("decode of random ids", r.rand_ids.map((x) => tok().decode(x, { cleanUpTokenizationSpaces: false })), r.rand_decode, r.rand_ids)).toBeNull();
    expect(mismatches("decode of random ids, skipSpecialTokens", r.rand_ids.map((x) => tok().decode(x, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false })), r.rand_decode_skip, r.rand_ids)).toBeNull();
    const lossless = LOSSLESS[name];
    if (lossless) {
      const inputs = fx.strings.filter((s) => lossless.applies(s));
      const back = fx.strings.flatMap((s, i) => (lossless.applies(s) ? [tok().decode(r.ids_plain[i]!)] : []));
      expect(inputs.length).toBeGreaterThan(1000);
      expect(mismatches("decode(encode(x)) round trip", back, inputs.map((s) => lossless.expected(s)), inputs, "expected")).toBeNull();
    }
  });

  it("stream decoding: pieces concatenate to decode(ids), each well-formed, no U+FFFD unless the decode has one", () => {
    const r = ref();
    const seqs = [...r.ids, ...r.rand_ids];
    const problems: string[] = [];
    let fffdHeld = 0;
    for (const skipSpecialTokens of [false, true]) {
      // Every sequence without skipping; every third with it (the same code path, a different token filter).
      seqs.forEach((ids, i) => {
        if (skipSpecialTokens && i % 3 !== 0) return;
        const sd = tok().streamDecoder({ skipSpecialTokens });
        const pieces = ids.map((id) => sd.push(id));
        const rest = sd.flush();
        pieces.push(rest);
        const full = tok().decode(ids, { skipSpecialTokens });
        const label = `${i < r.ids.length ? `string #${i}` : `random ids #${i - r.ids.length}`} (skip=${skipSpecialTokens})`;
        const joined = pieces.join("");
        if (joined !== full) {
          let k = 0;
          while (joined[k] === full[k]) k++;
          problems.push(`${label}: pieces differ from decode at ${k}: ${show(joined.slice(k, k + 20))} vs ${show(full.slice(k, k + 20))}`);
        }
        // Nothing is held without a reason: an open character (U+FFFD tail), an open byte run, or, with clean-up, the last word.
        const lastId = [...ids].reverse().find((id) => tok().idToToken(id) !== null && !(skipSpecialTokens && tok().isSpecialId(id)));
        const last = lastId === undefined ? undefined : tok().idToToken(lastId)!;
        const heldOk = full.endsWith("\ufffd") || (name === "llama2" && last !== undefined && /^<0x[0-9A-F]{2}>$/.test(last)) || (name === "bert" ? rest.lastIndexOf(" ") <= 0 : rest === "");
        if (!heldOk) problems.push(`${label}: flush() still had ${show(rest)} though nothing was open`);
        // Well-formed: no lone surrogate, so the UTF-8 round trip is exact.
        const broken = pieces.findIndex((p) => Buffer.from(p, "utf8").toString("utf8") !== p);
        if (broken >= 0) problems.push(`${label}: piece ${broken} is not well-formed`);
        if (!full.includes("\ufffd")) {
          const k = pieces.findIndex((p) => p.includes("\ufffd"));
          if (k >= 0) problems.push(`${label}: piece ${k} has U+FFFD but the decode has none`);
        } else fffdHeld++;
      });
    }
    expect(problems.slice(0, 5).join("\n")).toBe("");
    if (name === "gpt2" || name === "llama2") expect(fffdHeld).toBeGreaterThan(0); // the random byte runs did break UTF-8
  });

  it("vocabulary, named special tokens and their ids are transformers'", () => {
    const r = ref();
    const t = tok();
    expect(t.vocabSize).toBe(r.vocab_size);
    expect(t.vocabSize).toBe(r.hf_len);
    expect(t.specialTokens).toEqual(r.special_tokens_map);
    expect(t.bosTokenId).toBe(r.bos_token_id);
    expect(t.padTokenId).toBe(r.pad_token_id);
    expect(t.unkTokenId).toBe(r.unk_token_id);
    expect(t.eosTokenIds[0] ?? null).toBe(r.eos_token_id);
    expect(Object.entries(r.vocab).filter(([token, id]) => t.idToToken(id) !== token).slice(0, 5)).toEqual([]);
    expect(Object.entries(r.vocab).filter(([token, id]) => t.tokenToId(token) !== id).slice(0, 5)).toEqual([]);
    expect(t.idToToken(r.vocab_size + 10)).toBeNull();
    expect(t.tokenToId("\u0000definitely not a token\u0000")).toBeNull();
    expect(t.decode([r.vocab_size + 10, 2 ** 40])).toBe("");
    expect(() => t.decode([-1])).toThrow(TokenizerError);
  });

  it("chat templates render as apply_chat_template(tokenize=False), encodeChat as tokenize=True; no template is a typed error", async () => {
    const r = ref();
    const t = tok();
    if (!r.has_chat_template) {
      expect(t.chatTemplate).toBeNull();
      let err: unknown;
      try {
        t.applyChatTemplate(CONVERSATIONS[0]!.messages);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TokenizerError);
      expect((err as TokenizerError).code).toBe("E_NO_CHAT_TEMPLATE");
      expect((err as Error).message).toMatch(/has no chat template/);
      // A template can still be given by the caller.
      expect(t.applyChatTemplate([{ role: "user", content: "hi" }], { template: "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}" })).toBe("user: hi\n");
      return;
    }
    expect(r.chat.length).toBeGreaterThan(2 * CONVERSATIONS.length - 1);
    for (const entry of r.chat) {
      const conv = CONVERSATIONS[entry.conversation]!;
      const opts = {
        addGenerationPrompt: entry.add_generation_prompt,
        ...(conv.tools ? { tools: conv.tools } : {}),
        ...(conv.kwargs ? { variables: conv.kwargs } : {}),
        ...(entry.template ? { template: entry.template } : {}),
      };
      const label = `conversation ${entry.conversation} (add_generation_prompt=${entry.add_generation_prompt})`;
      if (entry.error !== undefined) {
        // Python raised (raise_exception in the template): so must we, with the template's message.
        const message = entry.error.replace(/^\w+: /, "");
        expect(() => t.applyChatTemplate(conv.messages, opts), label).toThrow(message);
        continue;
      }
      expect(t.applyChatTemplate(conv.messages, opts), label).toBe(entry.text);
      if (entry.ids) expect(await t.encodeChat(conv.messages, opts), label).toEqual(entry.ids);
    }
  });
});

describe("tokenizer folder files", () => {
  it("Llama 3: several end-of-sequence ids (generation_config.json after the tokenizer's eos_token); add_bos_token and clean-up as transformers 5", () => {
    const t = toks.get("llama3")!;
    const eot = t.tokenToId("<|eot_id|>")!;
    const end = t.tokenToId("<|end_of_text|>")!;
    expect(t.eosTokenIds).toEqual([eot, end]);
    expect(t.bosTokenId).toBe(t.tokenToId("<|begin_of_text|>"));
    // clean_up_tokenization_spaces is true in its config but transformers 5 ignores it for BPE; so do we.
    expect(t.decode([t.tokenToId("a")!, t.tokenToId("Ġ")!, t.tokenToId(".")!])).toBe("a .");
    expect(toks.get("bert")!.decode([toks.get("bert")!.tokenToId("a")!, toks.get("bert")!.tokenToId(".")!])).toBe("a.");
  });

  it("Qwen2: chat_template.jinja takes priority over tokenizer_config.json's chat_template", () => {
    const t = toks.get("qwen2")!;
    expect(t.chatTemplate).toMatch(/^\{%- if tools %\}/);
    expect(t.chatTemplate).not.toContain("overridden");
  });

  it("named templates: 'default', 'tool_use' when tools are given, or one picked by name", async () => {
    const { dir, cleanup } = tempDir("loraport-tok-named-");
    try {
      const src = fx.reference["gpt2"]!.folder;
      writeFileSync(join(dir, "tokenizer.json"), readFileSync(join(src, "tokenizer.json")));
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: [{ name: "default", template: "D{{ messages|length }}" }, { name: "tool_use", template: "T{{ tools|length }}" }, { name: "other", template: "O" }] }));
      const t = await loadTokenizer(dir);
      const m = [{ role: "user", content: "x" }];
      expect(t.chatTemplateNames).toEqual(["default", "tool_use", "other"]);
      expect(t.applyChatTemplate(m)).toBe("D1");
      expect(t.applyChatTemplate(m, { tools: [{ type: "function" }] })).toBe("T1");
      expect(t.applyChatTemplate(m, { template: "other" })).toBe("O");
      mkdirSync(join(dir, "additional_chat_templates"));
      writeFileSync(join(dir, "chat_template.jinja"), "F");
      writeFileSync(join(dir, "additional_chat_templates", "extra.jinja"), "E");
      const u = await loadTokenizer(dir);
      expect(u.applyChatTemplate(m)).toBe("F");
      expect(u.applyChatTemplate(m, { template: "extra" })).toBe("E");
      expect(() => u.applyChatTemplate([])).toThrow(/conversation is empty/);
      expect(() => u.applyChatTemplate(m, { template: "{% if %}" })).toThrow(/chat template does not parse/);
    } finally {
      cleanup();
    }
  });

  it("a folder without tokenizer.json is FileMissingError naming the file; malformed files are FormatError naming theirs", async () => {
    const { dir, cleanup } = tempDir("loraport-tok-bad-");
    try {
      const missing = await loadTokenizer(dir).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(FileMissingError);
      expect((missing as FileMissingError).file).toBe(join(dir, "tokenizer.json"));
      expect((missing as Error).message).toMatch(/has no tokenizer/);

      writeFileSync(join(dir, "tokenizer.json"), "{ not json");
      const bad = await loadTokenizer(dir).catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(FormatError);
      expect((bad as FormatError).file).toBe(join(dir, "tokenizer.json"));

      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ version: "1.0", model: { type: "NoSuchModel" } }));
      const wrong = await loadTokenizer(dir).catch((e: unknown) => e);
      expect(wrong).toBeInstanceOf(FormatError);
      expect((wrong as Error).message).toMatch(/tokenizer\.json: not a tokenizer the tokenizers library can load/);

      writeFileSync(join(dir, "tokenizer.json"), readFileSync(join(fx.reference["wordlevel"]!.folder, "tokenizer.json")));
      writeFileSync(join(dir, "tokenizer_config.json"), "[1, 2");
      const cfg = await loadTokenizer(dir).catch((e: unknown) => e);
      expect(cfg).toBeInstanceOf(FormatError);
      expect((cfg as FormatError).file).toBe(join(dir, "tokenizer_config.json"));
    } finally {
      cleanup();
    }
  });
});
