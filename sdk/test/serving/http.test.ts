/**
 * `loraport serve` as a user runs it (the built CLI in a child process), driven by the official `openai` npm client:
 * concurrent completions and chat completions for the base and two adapters, streamed and not, each equal to
 * transformers + PEFT greedy generate computed in the same run; an adapter loaded and unloaded at run time with
 * vLLM's routes; /v1/models and /metrics; bad requests, unknown models, a missing API key and overload as the
 * client's typed errors; a client that aborts frees its slot; SIGTERM closes cleanly. A few cases that need an
 * engine misbehaving on purpose run `startServer` in-process over a fake engine.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI, { AuthenticationError, BadRequestError, NotFoundError, RateLimitError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GenerationResult } from "../../src/generation/generate-options.js";
import { GenerationStream } from "../../src/generation/generation-stream.js";
import type { Engine, EngineRequest, EngineStats } from "../../src/serving/engine.js";
import { startServer } from "../../src/serving/http/index.js";
import { generateCliFixture } from "../helpers/generate-cli-fixture.js";
import { REPO_ROOT, runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

interface Greedy {
  tokens: number[];
  text: string;
}
interface CliRef {
  dir: string;
  eos: number;
}
interface ServeRef {
  prompt: string;
  promptIds: number[];
  chat: { role: string; content: string }[];
  chatIds: number[];
  long: number;
  completion: Record<"base" | "a" | "b" | "c", Greedy>;
  chatCompletion: Record<"base" | "a" | "b" | "c", Greedy>;
  baseLong: Greedy;
}

const BASE = "tiny-gpt2";
const API_KEY = "sk-loraport-test";
const MAX_BODY = 65536;

interface Served {
  readonly url: string;
  readonly proc: ChildProcess;
  stderr(): string;
  /** SIGTERM, then the exit code (null if it had to be killed). */
  stop(): Promise<number | null>;
}

/** Start `loraport serve` and wait for its `listening on` line. */
function serve(args: readonly string[]): Promise<Served> {
  const proc = spawn(process.execPath, [join(REPO_ROOT, "bin/loraport.js"), "serve", ...args], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const stop = async (): Promise<number | null> => {
    if (proc.exitCode !== null) return proc.exitCode;
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  return new Promise((resolve, reject) => {
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^listening on (http:\/\/\S+)$/m.exec(out);
      if (m) resolve({ url: m[1]!, proc, stderr: () => err, stop });
    });
    void exited.then((code) => reject(new Error(`loraport serve exited (${code}) before listening: ${err}`)));
  });
}

const client = (url: string, apiKey = "unused"): OpenAI => new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });

/** The thrown error of a promise that must reject. */
async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected the request to fail");
}

/** Prometheus text → name (with labels) → value. */
async function metrics(url: string): Promise<Map<string, number>> {
  const r = await fetch(`${url}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  const m = new Map<string, number>();
  for (const line of (await r.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const sp = line.lastIndexOf(" ");
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}

/** Wait (bounded) until `/metrics` shows an idle engine. */
async function untilIdle(url: string): Promise<Map<string, number>> {
  for (let i = 0; i < 300; i++) {
    const m = await metrics(url);
    if (m.get("loraport_running_batch_size") === 0 && m.get("loraport_queue_depth") === 0) return m;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the engine did not become idle");
}

const finishOf = (g: Greedy, max: number, eos: number): string => (g.tokens.length < max || g.tokens.at(-1) === eos ? "stop" : "length");

let tmp: ReturnType<typeof tempDir>;
let cli: CliRef;
let ref: ServeRef;
let main: Served;
let small: Served;

beforeAll(async () => {
  const dist = join(REPO_ROOT, "dist/cli/commands/serve.js");
  if (!existsSync(dist)) throw new Error(`${dist} is missing: build the SDK first (npx tsc -p tsconfig.json)`);
  tmp = tempDir("loraport-serve-");
  cli = await generateCliFixture<CliRef>(); // shared with sdk/test/generation/cli.test.ts: read-only, own adapters in tmp
  ref = runPythonJson<ServeRef>(readFileSync(join(REPO_ROOT, "sdk/test/serving/fixtures/serve_reference.py"), "utf8"), [cli.dir, tmp.dir, String(cli.eos)]);
  const model = join(cli.dir, "onnx");
  [main, small] = await Promise.all([
    serve(["--model", model, "--name", BASE, "--adapter", `a=${join(cli.dir, "adapter")}`, "--adapter", `b=${join(tmp.dir, "adapter-b")}`, "--port", "0", "--max-body-bytes", String(MAX_BODY)]),
    serve(["--model", model, "--name", BASE, "--port", "0", "--max-batch-size", "1", "--max-queue", "0", "--api-key", API_KEY]),
  ]);
}, limit(900_000));

afterAll(async () => {
  await Promise.all([main?.stop(), small?.stop()]);
  tmp?.cleanup();
});

describe("loraport serve (OpenAI API, as vLLM serves it)", () => {
  it("GET /health is 200; /v1/models lists the base and every adapter (parent = the base)", async () => {
    expect((await fetch(`${main.url}/health`)).status).toBe(200);
    const models = (await client(main.url).models.list()).data as unknown as { id: string; object: string; parent: string | null; root: string; max_model_len: number | null }[];
    expect(models.map((m) => m.id)).toEqual([BASE, "a", "b"]);
    expect(models.every((m) => m.object === "model")).toBe(true);
    expect(models[0]).toMatchObject({ parent: null, root: join(cli.dir, "onnx"), max_model_len: 64 });
    expect(models[1]).toMatchObject({ parent: BASE, root: join(cli.dir, "adapter") });
    expect(models[2]).toMatchObject({ parent: BASE, root: join(tmp.dir, "adapter-b") });
  });

  it("concurrent completions and chat for two adapters and the base, streamed and not: each equals transformers + PEFT greedy", async () => {
    const c = client(main.url);
    const jobs: Promise<void>[] = [];
    for (const [key, model] of [["base", BASE], ["a", "a"], ["b", "b"]] as const) {
      const want = ref.completion[key];
      const wantChat = ref.chatCompletion[key];
      jobs.push((async () => {
        const r = await c.completions.create({ model, prompt: ref.prompt, max_tokens: 16, temperature: 0 });
        expect(r.object).toBe("text_completion");
        expect(r.id).toMatch(/^cmpl-/);
        expect(r.model).toBe(model);
        expect(r.choices).toHaveLength(1);
        expect(r.choices[0]!.text, `completion ${key}`).toBe(want.text);
        expect(r.choices[0]!.finish_reason).toBe(finishOf(want, 16, cli.eos));
        expect(r.usage).toEqual({ prompt_tokens: ref.promptIds.length, completion_tokens: want.tokens.length, total_tokens: ref.promptIds.length + want.tokens.length });
      })());
      jobs.push((async () => {
        const stream = await c.completions.create({ model, prompt: ref.promptIds, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
        let text = "";
        const finishes: (string | null)[] = [];
        let usage: OpenAI.CompletionUsage | null | undefined;
        for await (const chunk of stream) {
          expect(chunk.object).toBe("text_completion");
          if (chunk.choices.length === 0) usage = chunk.usage;
          for (const ch of chunk.choices) {
            text += ch.text;
            finishes.push(ch.finish_reason);
          }
        }
        expect(text, `streamed completion ${key}`).toBe(want.text);
        expect(finishes.at(-1)).toBe(finishOf(want, 16, cli.eos));
        expect(finishes.slice(0, -1).every((f) => f === null)).toBe(true);
        expect(usage).toEqual({ prompt_tokens: ref.promptIds.length, completion_tokens: want.tokens.length, total_tokens: ref.promptIds.length + want.tokens.length });
      })());
      jobs.push((async () => {
        const r = await c.chat.completions.create({ model, messages: ref.chat as OpenAI.ChatCompletionMessageParam[], max_tokens: 16, temperature: 0 });
        expect(r.object).toBe("chat.completion");
        expect(r.id).toMatch(/^chatcmpl-/);
        expect(r.choices[0]!.message.role).toBe("assistant");
        expect(r.choices[0]!.message.content, `chat ${key}`).toBe(wantChat.text);
        expect(r.choices[0]!.finish_reason).toBe(finishOf(wantChat, 16, cli.eos));
        expect(r.usage?.prompt_tokens).toBe(ref.chatIds.length);
        expect(r.usage?.completion_tokens).toBe(wantChat.tokens.length);
      })());
      jobs.push((async () => {
        const stream = await c.chat.completions.create({ model, messages: ref.chat as OpenAI.ChatCompletionMessageParam[], max_completion_tokens: 16, temperature: 0, stream: true });
        const chunks: OpenAI.ChatCompletionChunk[] = [];
        for await (const chunk of stream) chunks.push(chunk);
        expect(chunks.every((ch) => ch.object === "chat.completion.chunk" && ch.id === chunks[0]!.id)).toBe(true);
        expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
        expect(chunks.map((ch) => ch.choices[0]?.delta.content ?? "").join(""), `streamed chat ${key}`).toBe(wantChat.text);
        expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe(finishOf(wantChat, 16, cli.eos));
        expect(chunks.at(-1)!.choices[0]!.delta.content).toBeUndefined();
      })());
    }
    await Promise.all(jobs);
    // The adapters matter (else equal texts would prove little).
    expect(new Set([ref.completion.base.text, ref.completion.a.text, ref.completion.b.text]).size).toBe(3);
  });

  it("chat without max_tokens generates up to the model's positions (as vLLM)", async () => {
    const r = await client(main.url).chat.completions.create({ model: "a", messages: ref.chat as OpenAI.ChatCompletionMessageParam[], temperature: 0 });
    const total = r.usage!.prompt_tokens + r.usage!.completion_tokens;
    expect(r.usage!.completion_tokens).toBeGreaterThanOrEqual(ref.chatCompletion.a.tokens.length);
    if (r.choices[0]!.finish_reason === "length") expect(total).toBe(64);
    else expect(total).toBeLessThanOrEqual(64);
  });

  it("loads an adapter at run time (POST /v1/load_lora_adapter), serves it, unloads it: then it is a 404", async () => {
    const post = (route: string, body: unknown): Promise<Response> => fetch(`${main.url}/v1/${route}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const path = join(tmp.dir, "adapter-c");
    const loaded = await post("load_lora_adapter", { lora_name: "c", lora_path: path });
    expect(loaded.status).toBe(200);
    expect(await loaded.text()).toMatch(/Success: LoRA adapter 'c' added/);
    const c = client(main.url);
    expect((await c.models.list()).data.map((m) => m.id)).toEqual([BASE, "a", "b", "c"]);
    const [plain, streamed] = await Promise.all([
      c.completions.create({ model: "c", prompt: ref.prompt, max_tokens: 16, temperature: 0 }),
      (async () => {
        let text = "";
        for await (const ch of await c.chat.completions.create({ model: "c", messages: ref.chat as OpenAI.ChatCompletionMessageParam[], max_tokens: 16, temperature: 0, stream: true })) text += ch.choices[0]?.delta.content ?? "";
        return text;
      })(),
    ]);
    expect(plain.choices[0]!.text).toBe(ref.completion.c.text);
    expect(streamed).toBe(ref.chatCompletion.c.text);

    const again = await post("load_lora_adapter", { lora_name: "c", lora_path: path });
    expect(again.status).toBe(400);
    expect(((await again.json()) as { error: { message: string } }).error.message).toMatch(/already been loaded/);
    expect((await post("load_lora_adapter", { lora_name: "c", lora_path: path, load_inplace: true })).status).toBe(200);
    expect((await post("load_lora_adapter", { lora_name: "d", lora_path: join(cli.dir, "no-such-adapter") })).status).toBe(404);
    expect((await post("load_lora_adapter", { lora_name: "d" })).status).toBe(400);
    expect((await post("load_lora_adapter", { lora_name: BASE, lora_path: path })).status).toBe(400);

    const unloaded = await post("unload_lora_adapter", { lora_name: "c" });
    expect(unloaded.status).toBe(200);
    expect(await unloaded.text()).toMatch(/Success: LoRA adapter 'c' removed/);
    const gone = await failure(c.completions.create({ model: "c", prompt: ref.prompt, max_tokens: 4, temperature: 0 }));
    expect(gone).toBeInstanceOf(NotFoundError);
    expect((gone as NotFoundError).status).toBe(404);
    expect((gone as NotFoundError).param).toBe("model");
    expect((gone as NotFoundError).message).toMatch(/The model `c` does not exist/);
    expect((await post("unload_lora_adapter", { lora_name: "c" })).status).toBe(404);
    expect((await c.models.list()).data.map((m) => m.id)).toEqual([BASE, "a", "b"]);
  });

  it("bad requests get OpenAI's error shape and the client's typed errors (400 with param, 404), never a stack", async () => {
    const c = client(main.url);
    const base = { model: "a", prompt: ref.prompt, max_tokens: 4, temperature: 0 };
    const cases: [Record<string, unknown>, string][] = [
      [{ temperature: -1 }, "temperature"],
      [{ top_p: 1.5 }, "top_p"],
      [{ top_k: 2.5 }, "top_k"],
      [{ max_tokens: 0 }, "max_tokens"],
      [{ temperature: "hot" }, "temperature"],
      [{ n: 2 }, "n"],
      [{ echo: true }, "echo"],
      [{ logprobs: 2 }, "logprobs"],
      [{ stop: [1] }, "stop"],
      [{ prompt: [...ref.promptIds, ...ref.promptIds, ...ref.promptIds, ...ref.promptIds, ...ref.promptIds, ...ref.promptIds] }, "prompt"],
      [{ prompt: 7 }, "prompt"],
    ];
    for (const [patch, param] of cases) {
      const err = await failure(c.completions.create({ ...base, ...patch } as unknown as OpenAI.CompletionCreateParamsNonStreaming));
      expect(err, JSON.stringify(patch)).toBeInstanceOf(BadRequestError);
      expect((err as BadRequestError).status).toBe(400);
      expect((err as BadRequestError).param, JSON.stringify(patch)).toBe(param);
      expect((err as BadRequestError).message).not.toMatch(/\n\s+at /);
    }
    const chatErr = await failure(c.chat.completions.create({ model: "b", messages: [], max_tokens: 4 }));
    expect(chatErr).toBeInstanceOf(BadRequestError);
    expect((chatErr as BadRequestError).param).toBe("messages");
    const chatMax = await failure(c.chat.completions.create({ model: "b", messages: ref.chat as OpenAI.ChatCompletionMessageParam[], max_completion_tokens: 100 }));
    expect((chatMax as BadRequestError).param).toBe("messages");
    const streamOpts = await failure(c.chat.completions.create({ model: "b", messages: ref.chat as OpenAI.ChatCompletionMessageParam[], stream_options: { include_usage: true } }));
    expect((streamOpts as BadRequestError).param).toBe("stream_options");
    // Errors before the first token come back as a status, also for streaming requests.
    const streamedBad = await failure(c.completions.create({ ...base, top_p: 0, stream: true }));
    expect(streamedBad).toBeInstanceOf(BadRequestError);
    expect((streamedBad as BadRequestError).param).toBe("top_p");

    const unknown = await failure(c.chat.completions.create({ model: "nope", messages: ref.chat as OpenAI.ChatCompletionMessageParam[] }));
    expect(unknown).toBeInstanceOf(NotFoundError);
    expect((unknown as NotFoundError).error).toEqual({ message: "The model `nope` does not exist.", type: "NotFoundError", param: "model", code: 404 });

    const raw = (path: string, init: RequestInit = {}): Promise<Response> => fetch(`${main.url}${path}`, init);
    const badJson = await raw("/v1/completions", { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { error: { type: string } }).error.type).toBe("BadRequestError");
    const notObject = await raw("/v1/chat/completions", { method: "POST", body: "[1, 2]" });
    expect(notObject.status).toBe(400);
    const route = await raw("/v1/embeddings", { method: "POST", body: "{}" });
    expect(route.status).toBe(404);
    expect(((await route.json()) as { error: { type: string } }).error.type).toBe("NotFoundError");
    expect((await raw("/v1/completions")).status).toBe(405);
    const big = await raw("/v1/completions", { method: "POST", body: JSON.stringify({ model: "a", prompt: "x".repeat(MAX_BODY) }) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { code: number } }).error.code).toBe(413);
    // The server is still serving.
    expect((await c.completions.create({ ...base, max_tokens: 16 })).choices[0]!.text).toBe(ref.completion.a.text);
  });

  it("/metrics: Prometheus text with loraport_ counters and gauges from the engine", async () => {
    const r = await fetch(`${main.url}/metrics`);
    const text = await r.text();
    for (const name of ["loraport_requests_total", "loraport_requests_rejected_total", "loraport_prompt_tokens_total", "loraport_generation_tokens_total", "loraport_steps_total"]) {
      expect(text).toContain(`# HELP ${name} `);
      expect(text).toContain(`# TYPE ${name} counter`);
    }
    for (const name of ["loraport_queue_depth", "loraport_running_batch_size", "loraport_adapters_loaded", "loraport_adapters_active"]) expect(text).toContain(`# TYPE ${name} gauge`);
    const m = await untilIdle(main.url);
    expect(m.get("loraport_requests_total")).toBeGreaterThanOrEqual(15);
    expect(m.get("loraport_generation_tokens_total")).toBeGreaterThan(100);
    expect(m.get("loraport_prompt_tokens_total")).toBeGreaterThan(100);
    expect(m.get("loraport_steps_total")).toBeGreaterThan(0);
    expect(m.get("loraport_requests_rejected_total")).toBe(0);
    expect(m.get("loraport_adapters_loaded")).toBe(2);
    expect(m.get('loraport_http_responses_total{route="/v1/completions",code="200"}')).toBeGreaterThanOrEqual(6);
    expect(m.get('loraport_http_responses_total{route="/v1/completions",code="400"}')).toBeGreaterThanOrEqual(10);
  });

  it("--api-key: /v1/* needs 'Authorization: Bearer <key>' (AuthenticationError otherwise); /health stays open", async () => {
    const wrong = await failure(client(small.url, "sk-wrong").models.list());
    expect(wrong).toBeInstanceOf(AuthenticationError);
    expect((wrong as AuthenticationError).status).toBe(401);
    expect((await fetch(`${small.url}/v1/models`)).status).toBe(401);
    const post = await failure(client(small.url, "sk-wrong").completions.create({ model: BASE, prompt: ref.prompt, max_tokens: 4 }));
    expect(post).toBeInstanceOf(AuthenticationError);
    expect((await fetch(`${small.url}/v1/no-such-route`)).status).toBe(401);
    expect((await fetch(`${small.url}/health`)).status).toBe(200);
    expect((await client(small.url, API_KEY).models.list()).data.map((m) => m.id)).toEqual([BASE]);
  });

  it("overload (--max-batch-size 1 --max-queue 0): some concurrent requests get 429 (RateLimitError), the others are correct", async () => {
    const c = client(small.url, API_KEY);
    const params = { model: BASE, prompt: ref.promptIds, max_tokens: ref.long, temperature: 0, ignore_eos: true } as unknown as OpenAI.CompletionCreateParamsNonStreaming;
    const settled = await Promise.allSettled(Array.from({ length: 8 }, () => c.completions.create(params)));
    const ok = settled.filter((s) => s.status === "fulfilled").map((s) => s.value);
    const refused = settled.filter((s) => s.status === "rejected").map((s) => s.reason as unknown);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const e of refused) {
      expect(e).toBeInstanceOf(RateLimitError);
      expect((e as RateLimitError).status).toBe(429);
    }
    for (const r of ok) {
      expect(r.choices[0]!.text).toBe(ref.baseLong.text);
      expect(r.usage!.completion_tokens).toBe(ref.long);
    }
    const m = await untilIdle(small.url);
    expect(m.get("loraport_requests_rejected_total")).toBe(refused.length);
  });

  it("a client that aborts a stream frees its slot: the next request is served (batch size 1, no queue)", async () => {
    const c = client(small.url, API_KEY);
    const before = await untilIdle(small.url);
    const ac = new AbortController();
    const params = { model: BASE, prompt: ref.promptIds, max_tokens: ref.long, temperature: 0, ignore_eos: true, stream: true } as unknown as OpenAI.CompletionCreateParamsStreaming;
    const stream = await c.completions.create(params, { signal: ac.signal });
    let first = "";
    for await (const chunk of stream) {
      first = chunk.choices[0]?.text ?? "";
      ac.abort();
      break;
    }
    expect(ref.baseLong.text.startsWith(first)).toBe(true);
    const after = await untilIdle(small.url);
    // On this tiny model the generation may finish before the disconnect reaches the server; either way it is
    // accounted for: cut short (and counted as cancelled) or whole. (The fake engine below checks the abort itself.)
    const delta = (name: string): number => after.get(name)! - before.get(name)!;
    if (delta("loraport_requests_cancelled_total") === 1) expect(delta("loraport_generation_tokens_total")).toBeLessThan(ref.long);
    else expect(delta("loraport_generation_tokens_total")).toBe(ref.long);
    const next = await c.completions.create({ model: BASE, prompt: ref.prompt, max_tokens: 16, temperature: 0 });
    expect(next.choices[0]!.text).toBe(ref.completion.base.text);
    expect((await metrics(small.url)).get("loraport_queue_depth")).toBe(0);
  });

  it("serves a merged export (one adapter, no overhead) under the base's name", async () => {
    const merged = await serve(["--model", join(cli.dir, "onnx-merged"), "--port", "0"]);
    try {
      const c = client(merged.url);
      expect((await c.models.list()).data.map((m) => m.id)).toEqual(["onnx-merged"]);
      const r = await c.completions.create({ model: "onnx-merged", prompt: ref.prompt, max_tokens: 16, temperature: 0 });
      expect(r.choices[0]!.text).toBe(ref.completion.a.text);
    } finally {
      expect(await merged.stop()).toBe(0);
    }
  });

  it("a bad --adapter is a one-line usage error (exit 1); SIGTERM closes the server and exits 0", async () => {
    const bad = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [join(REPO_ROOT, "bin/loraport.js"), "serve", "--model", join(cli.dir, "onnx"), "--adapter", "no-equals-sign"], { cwd: REPO_ROOT });
      let stderr = "";
      p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      p.once("exit", (code) => resolve({ code, stderr }));
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split("\n")).toEqual(["loraport: --adapter no-equals-sign: expected name=path (e.g. --adapter support=adapters/support)"]);
    expect(await small.stop()).toBe(0);
  });
});

/** An engine that does what a test needs: fail, or stream one delta and then wait for its signal. */
function fakeEngine(behaviour: "throw" | "hang"): Engine & { aborted: Promise<void> } {
  let sawAbort!: () => void;
  const aborted = new Promise<void>((r) => (sawAbort = r));
  const stats: EngineStats = { requestsTotal: 0, requestsRejected: 0, promptTokensTotal: 0, generatedTokensTotal: 0, queueDepth: 0, batchSize: 0, stepsTotal: 0, adaptersActive: 0, adaptersLoaded: 0 };
  return {
    aborted,
    generate: (request: EngineRequest) => new GenerationStream<GenerationResult>(async (emit) => {
      if (behaviour === "throw") throw new Error("boom\n    at secret (/internal/file.ts:1:1)");
      emit({ index: 0, tokenId: 1, text: "x" });
      const signal = request.options.signal!;
      await new Promise<void>((r) => (signal.aborted ? r() : signal.addEventListener("abort", () => r(), { once: true })));
      sawAbort();
      return { index: 0, tokens: [1], text: "x", finishReason: "abort", promptTokens: 1, timings: { ttftMs: 0, tokensPerSecond: 0, totalMs: 0 } };
    }),
    models: () => ({ base: "fake", adapters: [] }),
    loadAdapter: async () => undefined,
    unloadAdapter: async () => undefined,
    stats: () => stats,
    close: async () => undefined,
  };
}

describe("startServer over any Engine", () => {
  it("an unexpected engine error is a 500 with its first line, never a stack", async () => {
    const server = await startServer(fakeEngine("throw"));
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const r = await fetch(`${server.url}/v1/completions`, { method: "POST", body: JSON.stringify({ model: "fake", prompt: [1] }) });
      expect(r.status).toBe(500);
      const body = (await r.json()) as { error: { message: string; type: string; code: number } };
      expect(body.error).toMatchObject({ message: "internal error: boom", type: "InternalServerError", code: 500 });
    } finally {
      await server.close();
    }
  });

  it("a client disconnecting mid-stream aborts the generation through options.signal", async () => {
    const engine = fakeEngine("hang");
    const server = await startServer(engine);
    try {
      const ac = new AbortController();
      const stream = await client(server.url).completions.create({ model: "fake", prompt: [1], stream: true }, { signal: ac.signal });
      for await (const chunk of stream) {
        expect(chunk.choices[0]!.text).toBe("x");
        ac.abort();
        break;
      }
      await engine.aborted;
      const m = await metrics(server.url);
      expect(m.get("loraport_requests_cancelled_total")).toBe(1);
    } finally {
      await server.close();
    }
  });

  it("close() ends a running stream with an error event (503) and resolves", async () => {
    const engine = fakeEngine("hang");
    const server = await startServer(engine);
    const stream = await client(server.url).completions.create({ model: "fake", prompt: [1], stream: true });
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    expect((first.value as OpenAI.Completion).choices[0]!.text).toBe("x");
    await server.close();
    await engine.aborted;
    const err = await failure(it.next());
    expect(String((err as Error).message)).toMatch(/shutting down/);
  });
});
