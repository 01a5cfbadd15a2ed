/**
 * `loraport generate` as a user runs it (the built CLI in a child process): text, ids and chat prompts, with and
 * without an adapter, streamed and --json, against transformers + PEFT greedy generate computed in the same run;
 * seeded sampling is reproducible; bad input gets one typed line and exit 1.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { generateCliFixture } from "../helpers/generate-cli-fixture.js";
import { REPO_ROOT } from "../helpers/python.js";
import { AdapterError, FileMissingError } from "../../src/errors.js";
import { GenerationOptionError } from "../../src/generation/sampling-options.js";
import { TextModel } from "../../src/generation/text-model.js";
import { limit } from "../helpers/timeouts.js";

const exec = promisify(execFile);

interface Ref {
  dir: string;
  prompt: string;
  promptIds: number[];
  eos: number;
  base: { tokens: number[]; text: string };
  adapter: { tokens: number[]; text: string };
  chat: { tokens: number[]; text: string };
}

let ref: Ref;

beforeAll(async () => {
  ref = await generateCliFixture<Ref>(); // shared with sdk/test/serving/http.test.ts; read-only here
}, limit(900_000));

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [join(REPO_ROOT, "bin/loraport.js"), "generate", ...args], { cwd: REPO_ROOT, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

const json = (s: string): Record<string, unknown> => JSON.parse(s.trim().split("\n").at(-1)!) as Record<string, unknown>;

describe("loraport generate", () => {
  it("--prompt --json: greedy tokens and text equal transformers generate, base and adapter", async () => {
    const m = join(ref.dir, "onnx");
    const base = await cli("--model", m, "--prompt", ref.prompt, "--max-new-tokens", "16", "--json");
    expect(base.code, base.stderr).toBe(0);
    const b = json(base.stdout);
    expect(b["tokens"]).toEqual(ref.base.tokens);
    expect(b["text"]).toBe(ref.base.text);
    expect(b["provider"]).toBe("cpu");
    expect(["stop", "length"]).toContain(b["finish_reason"]);
    expect(typeof b["ttft_ms"]).toBe("number");
    expect(typeof b["tokens_per_s"]).toBe("number");
    const withAdapter = json((await cli("--model", m, "--adapter", join(ref.dir, "adapter"), "--prompt", ref.prompt, "--max-new-tokens", "16", "--json")).stdout);
    expect(withAdapter["tokens"]).toEqual(ref.adapter.tokens);
    expect(ref.adapter.tokens).not.toEqual(ref.base.tokens);
  });

  it("streams text to stdout (the same text as --json), from --ids and from a merged export", async () => {
    const streamed = await cli("--model", join(ref.dir, "onnx-merged"), "--ids", ref.promptIds.join(","), "--max-new-tokens", "16");
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stdout).toBe(ref.adapter.text + "\n");
  });

  it("--chat renders the chat template as apply_chat_template does", async () => {
    const r = json((await cli("--model", join(ref.dir, "onnx-merged"), "--chat", join(ref.dir, "chat.json"), "--max-new-tokens", "16", "--json")).stdout);
    expect(r["tokens"]).toEqual(ref.chat.tokens);
  });

  it("seeded sampling gives the same tokens run to run, another seed others", async () => {
    const args = ["--model", join(ref.dir, "onnx"), "--prompt", ref.prompt, "--max-new-tokens", "16", "--temperature", "1.5", "--top-p", "0.95", "--json"];
    const a = json((await cli(...args, "--seed", "7")).stdout)["tokens"];
    const b = json((await cli(...args, "--seed", "7")).stdout)["tokens"];
    const c = json((await cli(...args, "--seed", "8")).stdout)["tokens"];
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it("stop strings end the text before the stop", async () => {
    const cut = ref.adapter.text.slice(3, 5);
    if (cut.length < 2) return; // (the reference text is too short to cut)
    const r = json((await cli("--model", join(ref.dir, "onnx-merged"), "--prompt", ref.prompt, "--max-new-tokens", "16", "--stop", cut, "--json")).stdout);
    expect(r["finish_reason"]).toBe("stop");
    expect(r["text"]).toBe(ref.adapter.text.slice(0, ref.adapter.text.indexOf(cut)));
  });

  it("bad input: one typed line naming the problem, exit 1, no stack trace", async () => {
    const m = join(ref.dir, "onnx");
    const cases: [string[], RegExp][] = [
      [["--model", m, "--prompt", "x", "--adapter", join(ref.dir, "nope")], /nope: adapter not found/],
      [["--model", m, "--ids", Array.from({ length: 60 }, () => "5").join(","), "--max-new-tokens", "16"], /60 tokens \+ maxNewTokens 16 exceed the model's 64 positions/],
      [["--model", join(ref.dir, "onnx-no-tokenizer"), "--prompt", "hello"], /need a tokenizer.*tokenizer\.json missing/],
      [["--model", join(ref.dir, "onnx-no-tokenizer"), "--ids", "1,2", "--stop", "ab"], /stop: stop strings need a tokenizer/],
      [["--model", m, "--prompt", "x", "--top-p", "1.5"], /topP: expected a number in \(0, 1\], got 1\.5/],
      [["--model", m, "--prompt", "x", "--ids", "1"], /exactly one of --prompt/],
      [["--model", m, "--ids", "1,x"], /--ids 1,x: expected comma-separated/],
      [["--model", join(ref.dir, "missing-export"), "--ids", "1"], /loraport-onnx\.json: no such file/],
    ];
    for (const [args, want] of cases) {
      const r = await cli(...args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(want);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("the API refuses bad input with typed errors naming the option, before any model work", async () => {
    await using model = await TextModel.load(join(ref.dir, "onnx"));
    const gen = (prompt: Parameters<TextModel["generate"]>[0], options: Parameters<TextModel["generate"]>[1]) => model.generate(prompt, { maxNewTokens: 8, ...options }).result;
    await expect(gen("hi", { adapter: "nope" })).rejects.toThrow(AdapterError);
    await expect(gen("hi", { adapter: "nope" })).rejects.toThrow(/adapter 'nope' is not registered/);
    await expect(gen("hi", { stop: {} as never })).rejects.toThrow(GenerationOptionError);
    await expect(gen("hi", { stop: [1.5] })).rejects.toThrow(/stop\[0\]: expected a non-negative integer token id, got 1\.5/);
    await expect(gen(Array.from({ length: 60 }, () => 5), { maxNewTokens: 16 })).rejects.toThrow(/60 tokens \+ maxNewTokens 16 exceed the model's 64 positions/);
    await expect(gen("hi", { temperature: -1 })).rejects.toThrow(/temperature: expected a finite number ≥ 0/);
    await using bare = await TextModel.load(join(ref.dir, "onnx-no-tokenizer"));
    await expect(bare.generate("hello", { maxNewTokens: 8 }).result).rejects.toThrow(FileMissingError);
    // The stream rejects the same way.
    await expect((async () => { for await (const _ of model.generate("hi", { topK: -2, maxNewTokens: 8 })) void _; })()).rejects.toThrow(/topK/);
  });
});
