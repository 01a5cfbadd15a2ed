/**
 * The vLLM engine: loraport's `Engine` on a vLLM OpenAI-compatible server — started here (`VllmEngine.start`) or
 * already running elsewhere (`VllmEngine.connect`, e.g. a cluster with tensor parallelism or Ray). Adapters are
 * registered through vLLM's `/v1/load_lora_adapter`; loralib checkpoints are converted to PEFT folders first (exactly,
 * by loraport). Code written against `Engine` (generate, load/unload, models) runs unchanged on either engine.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertLoralibToPeft } from "../../adapter/convert.js";
import { readLoralibCheckpoint, type LoralibOptions } from "../../adapter/loralib.js";
import { writePeftAdapter } from "../../adapter/peft-io.js";
import { AdapterError, FileMissingError, OverloadedError, RuntimeError } from "../../errors.js";
import type { GenerationDelta, GenerationResult } from "../../generation/generate-options.js";
import { GenerationStream } from "../../generation/generation-stream.js";
import type { Prompt } from "../../generation/text-model.js";
import { GenerationOptionError, parseStop, validateSamplingOptions } from "../../generation/sampling-options.js";
import type { Engine, EngineModels, EngineRequest, EngineStats } from "../engine.js";
import { sseData } from "./sse.js";
import { VllmProcess, type VllmLaunchOptions } from "./vllm-process.js";

export interface VllmConnectOptions {
  /** `Authorization: Bearer` for a server started with `--api-key`. */
  readonly apiKey?: string;
  /** Hyper-parameters for loralib checkpoints given to `loadAdapter` (they store none). */
  readonly loralib?: LoralibOptions;
}

interface StreamChunk {
  choices?: { text?: string; delta?: { content?: string }; finish_reason?: string | null; stop_reason?: string | number | null; token_ids?: number[] | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
}

export class VllmEngine implements Engine {
  readonly url: string;
  readonly #process: VllmProcess | undefined;
  readonly #options: VllmConnectOptions;
  #base = "";
  readonly #adapters = new Set<string>();
  readonly #scratch: string[] = [];
  #requests = 0;
  #rejected = 0;
  #promptTokens = 0;
  #generated = 0;
  #running = 0;

  private constructor(url: string, process: VllmProcess | undefined, options: VllmConnectOptions) {
    this.url = url.replace(/\/+$/, "");
    this.#process = process;
    this.#options = options;
  }

  /** Start a vLLM server for `options.model` on 127.0.0.1 and connect to it (minutes on a CPU machine). */
  static async start(options: VllmLaunchOptions & VllmConnectOptions): Promise<VllmEngine> {
    const proc = await VllmProcess.start(options);
    try {
      const engine = new VllmEngine(proc.url, proc, options);
      await engine.#refresh();
      return engine;
    } catch (err) {
      await proc.stop();
      throw err;
    }
  }

  /** Use a running vLLM server (`url` without `/v1`), e.g. a cluster's. */
  static async connect(url: string, options: VllmConnectOptions = {}): Promise<VllmEngine> {
    const engine = new VllmEngine(url, undefined, options);
    await engine.#refresh();
    return engine;
  }

  async #fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers: Record<string, string> = { "content-type": "application/json", ...(this.#options.apiKey ? { authorization: `Bearer ${this.#options.apiKey}` } : {}) };
    try {
      return await fetch(`${this.url}${path}`, { ...init, headers: { ...headers, ...(init.headers as Record<string, string> | undefined) } });
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      throw new RuntimeError(`vLLM at ${this.url}: ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  async #refresh(): Promise<void> {
    const res = await this.#fetch("/v1/models");
    if (!res.ok) throw new RuntimeError(`vLLM at ${this.url}: GET /v1/models answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    const body = (await res.json()) as { data: { id: string; parent?: string | null }[] };
    const base = body.data.find((m) => !m.parent);
    if (!base) throw new RuntimeError(`vLLM at ${this.url}: /v1/models lists no base model`);
    this.#base = base.id;
    this.#adapters.clear();
    for (const m of body.data) if (m.parent) this.#adapters.add(m.id);
  }

  models(): EngineModels {
    return { base: this.#base, adapters: [...this.#adapters] };
  }

  async loadAdapter(name: string, path: string): Promise<void> {
    let isDir: boolean;
    try {
      isDir = statSync(path).isDirectory();
    } catch {
      throw new FileMissingError(path, `${path}: adapter not found (expected a PEFT adapter folder or a loralib checkpoint file)`);
    }
    let folder = path;
    if (!isDir) {
      // vLLM reads PEFT folders only: convert the loralib checkpoint exactly, as loraport's own readers do.
      const { adapter } = convertLoralibToPeft(await readLoralibCheckpoint(path), this.#options.loralib ?? {});
      folder = mkdtempSync(join(tmpdir(), "loraport-vllm-adapter-"));
      this.#scratch.push(folder);
      await writePeftAdapter(folder, adapter);
    }
    const res = await this.#fetch("/v1/load_lora_adapter", { method: "POST", body: JSON.stringify({ lora_name: name, lora_path: folder }) });
    if (!res.ok) throw new AdapterError(`vLLM refused adapter '${name}' (${path}): ${res.status} ${(await res.text()).slice(0, 300)}`);
    this.#adapters.add(name);
  }

  async unloadAdapter(name: string): Promise<void> {
    const res = await this.#fetch("/v1/unload_lora_adapter", { method: "POST", body: JSON.stringify({ lora_name: name }) });
    if (!res.ok) throw new AdapterError(`vLLM could not unload adapter '${name}': ${res.status} ${(await res.text()).slice(0, 300)}`);
    this.#adapters.delete(name);
  }

  generate(request: EngineRequest): GenerationStream<GenerationResult> {
    this.#requests++;
    return new GenerationStream(async (emit) => {
      this.#running++;
      try {
        return await this.#generate(request, emit);
      } finally {
        this.#running--;
      }
    });
  }

  async #generate({ prompt, options }: EngineRequest, emit: (d: GenerationDelta) => void): Promise<GenerationResult> {
    validateSamplingOptions(options);
    const adapter = options.adapter ?? null;
    if (adapter !== null && !this.#adapters.has(adapter)) throw new AdapterError(`adapter '${adapter}' is not loaded in vLLM (loaded: ${[...this.#adapters].join(", ") || "none"})`);
    const stop = parseStop(options.stop);
    const chat = typeof prompt !== "string" && prompt.length > 0 && typeof prompt[0] === "object";
    // Greedy unless a sampling option is given, as loraport's sampler decides.
    const sampling = options.temperature === undefined && options.topK === undefined && options.topP === undefined && options.minP === undefined;
    const body: Record<string, unknown> = {
      model: adapter ?? this.#base, max_tokens: options.maxNewTokens ?? 64, stream: true, stream_options: { include_usage: true },
      temperature: sampling ? 0 : (options.temperature ?? 1),
      ...(options.topK ? { top_k: options.topK } : {}), ...(options.topP !== undefined ? { top_p: options.topP } : {}),
      ...(options.minP !== undefined ? { min_p: options.minP } : {}), ...(options.repetitionPenalty !== undefined ? { repetition_penalty: options.repetitionPenalty } : {}),
      ...(options.seed !== undefined ? { seed: Number(options.seed) } : {}),
      ...(stop.strings.length ? { stop: stop.strings } : {}), ...(stop.ids.length ? { stop_token_ids: stop.ids } : {}),
      ...(options.ignoreEos ? { ignore_eos: true } : {}),
      return_token_ids: true,
      ...(chat ? { messages: prompt } : { prompt }),
    };
    if (chat && !Array.isArray(prompt)) throw new GenerationOptionError("prompt", "expected chat messages");
    const t0 = performance.now();
    const res = await this.#fetch(chat ? "/v1/chat/completions" : "/v1/completions", { method: "POST", body: JSON.stringify(body), ...(options.signal ? { signal: options.signal } : {}) }).catch((err: unknown) => {
      if ((err as Error).name === "AbortError") return undefined;
      throw err;
    });
    const tokens: number[] = [];
    let text = "";
    let finish: GenerationResult["finishReason"] = "abort";
    let stoppedBy: string | number | undefined;
    let promptTokens = 0;
    let tFirst = 0;
    if (res) {
      if (res.status === 429) {
        this.#rejected++;
        throw new OverloadedError(`vLLM at ${this.url} is overloaded (429): ${(await res.text()).slice(0, 200)}`);
      }
      if (!res.ok || !res.body) {
        const detail = (await res.text()).slice(0, 300);
        if (res.status === 404) throw new AdapterError(`vLLM at ${this.url}: ${detail}`);
        throw new RuntimeError(`vLLM at ${this.url} answered ${res.status}: ${detail}`);
      }
      try {
        for await (const data of sseData(res.body)) {
          if (data === "[DONE]") break;
          const chunk = JSON.parse(data) as StreamChunk;
          if (chunk.usage?.prompt_tokens !== undefined) promptTokens = chunk.usage.prompt_tokens;
          for (const c of chunk.choices ?? []) {
            const piece = c.text ?? c.delta?.content ?? "";
            const ids = c.token_ids ?? [];
            if (tFirst === 0 && (ids.length > 0 || piece)) tFirst = performance.now();
            ids.forEach((id, i) => emit({ index: 0, tokenId: id, text: i === ids.length - 1 ? piece : "" }));
            if (ids.length === 0 && piece) emit({ index: 0, tokenId: -1, text: piece });
            tokens.push(...ids);
            text += piece;
            if (c.finish_reason) {
              finish = c.finish_reason === "length" ? "length" : "stop";
              if (c.stop_reason !== null && c.stop_reason !== undefined) stoppedBy = c.stop_reason;
            }
          }
        }
      } catch (err) {
        if ((err as Error).name !== "AbortError") throw err;
        finish = "abort";
      }
    }
    const end = performance.now();
    this.#promptTokens += promptTokens;
    this.#generated += tokens.length;
    const after = tokens.length - 1;
    return {
      index: 0, tokens, text, finishReason: finish, promptTokens,
      timings: { ttftMs: (tFirst || end) - t0, tokensPerSecond: after > 0 && end > tFirst ? (after * 1000) / (end - tFirst) : 0, totalMs: end - t0 },
      ...(stoppedBy !== undefined ? { stoppedBy } : {}),
    };
  }

  async encodePrompt(prompt: Prompt): Promise<number[]> {
    if (Array.isArray(prompt) && prompt.every((x) => typeof x === "number")) return [...(prompt as number[])];
    const res = await this.#fetch("/tokenize", { method: "POST", body: JSON.stringify(typeof prompt === "string" ? { model: this.#base, prompt } : { model: this.#base, messages: prompt }) });
    if (!res.ok) throw new RuntimeError(`vLLM at ${this.url}: /tokenize answered ${res.status}`);
    return ((await res.json()) as { tokens: number[] }).tokens;
  }

  stats(): EngineStats {
    return {
      requestsTotal: this.#requests, requestsRejected: this.#rejected, promptTokensTotal: this.#promptTokens, generatedTokensTotal: this.#generated,
      queueDepth: 0, batchSize: this.#running, stepsTotal: 0, adaptersActive: this.#adapters.size, adaptersLoaded: this.#adapters.size,
    };
  }

  async close(): Promise<void> {
    await this.#process?.stop();
    for (const d of this.#scratch.splice(0)) rmSync(d, { recursive: true, force: true });
  }

  /** `await using engine = await VllmEngine.start(...)`: vLLM is stopped at scope end. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
