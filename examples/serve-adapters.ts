/**
 * Serve two LoRA adapters on one base model over HTTP, chosen per request (node:http + loraport's ONNX Runtime path).
 *
 *   npx tsx examples/serve-adapters.ts            # listens on http://127.0.0.1:8787
 *   curl -s http://127.0.0.1:8787/v1/logits -d '{"adapter": "alpha", "ids": [1, 5, 9]}'
 *   # → {"adapter":"alpha","provider":"cpu","ms":0.4,"logits":[...128 values: the last position's logits]}
 *   curl -s http://127.0.0.1:8787/v1/logits -d '{"adapter": "alpha", "ids": [[1, 5, 9], [2, 6, 10]]}'
 *   # → "logits": [[...128], [...128]]: one row per sequence of the batch (rows of one length)
 *   curl -s http://127.0.0.1:8787/v1/logits -d '{"adapter": "beta", "ids": [1, 5, 9]}'
 *   curl -s http://127.0.0.1:8787/v1/logits -d '{"ids": [1, 5, 9]}'        # no adapter: the base model
 *   curl -s http://127.0.0.1:8787/v1/adapters
 *   curl -s http://127.0.0.1:8787/v1/generate -d '{"adapter": "alpha", "ids": [1, 5, 9], "max_new_tokens": 16}'
 *   # → {"adapter":"alpha","tokens":[...16 new ids],"text":"","finish_reason":"length",...}   (greedy; KV cache)
 *   #   "prompt": "text" instead of "ids" with an export that has a tokenizer (--model); "temperature", "seed" too
 *
 * On first run it builds what it serves into its cache folder (default .loraport-cache/serve-adapters, or --cache DIR):
 * the sidecar exports loraport's tiny seeded GPT-2 with LoRA inputs, and two PEFT adapters (ranks 4 and 8) are
 * written from seeded factors. Use your own with --model <exported dir> --adapter name=<PEFT dir or loralib file> ...
 * Options: --port N (0 = any free port), --host (default 127.0.0.1). One session serves both adapters: ONNX Runtime
 * runs on a worker thread, so the server keeps accepting requests while a forward pass runs.
 */
import { existsSync, mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import {
  LoraportError, Sidecar, TextModel, lastLogits, loraConfig, readAdapterFromPath, tensor, writePeftAdapter,
  type LoraAdapter, type LoraModule,
} from "loraport";

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "8787" },
    host: { type: "string", default: "127.0.0.1" },
    cache: { type: "string", default: ".loraport-cache/serve-adapters" },
    model: { type: "string" },
    adapter: { type: "string", multiple: true },
  },
});

/** A seeded PEFT adapter for the tiny GPT-2's c_attn (2 layers, 64 wide). */
function seededAdapter(seed: number, r: number): LoraAdapter {
  let s = seed;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.2;
  const fill = (rows: number, cols: number) => tensor("F32", [rows, cols], Float32Array.from({ length: rows * cols }, rnd));
  const modules = new Map<string, LoraModule>();
  for (let l = 0; l < 2; l++) modules.set(`transformer.h.${l}.attn.c_attn`, { kind: "conv1d", A: fill(r, 64), B: fill(192, r) });
  return { config: loraConfig({ r, lora_alpha: 2 * r, target_modules: ["c_attn"], fan_in_fan_out: true }), modules, extraTensors: new Map() };
}

/** Build the default model and adapters once (cached). */
async function prepareDefaults(cache: string): Promise<{ model: string; adapters: Record<string, string> }> {
  const model = join(cache, "gpt2-adapter-inputs");
  const adapters = { alpha: join(cache, "adapter-alpha"), beta: join(cache, "adapter-beta") };
  mkdirSync(cache, { recursive: true });
  if (!existsSync(join(adapters.alpha, "adapter_config.json"))) await writePeftAdapter(adapters.alpha, seededAdapter(1, 4));
  if (!existsSync(join(adapters.beta, "adapter_config.json"))) await writePeftAdapter(adapters.beta, seededAdapter(2, 8));
  // (Re-)export when missing, or when an earlier loraport wrote it without the KV cache generation needs.
  const manifest = join(model, "loraport-onnx.json");
  if (!existsSync(manifest) || !(JSON.parse(readFileSync(manifest, "utf8")) as { generation?: unknown }).generation) {
    console.log("first run: exporting the tiny GPT-2 with LoRA inputs (sidecar)…");
    const sc = await Sidecar.start();
    try {
      const base = await sc.loadModel({ source: { kind: "builtin", family: "gpt2" } });
      await sc.exportOnnx(base, model, { mode: "adapter-inputs", targets: ["c_attn"] });
    } finally {
      await sc.close();
    }
  }
  return { model, adapters };
}

async function main(): Promise<void> {
  let modelDir: string;
  let adapterPaths: Record<string, string>;
  if (args.model) {
    modelDir = args.model;
    adapterPaths = Object.fromEntries((args.adapter ?? []).map((a) => {
      const eq = a.indexOf("=");
      if (eq <= 0) throw new LoraportError("E_USAGE", `--adapter ${a}: expected name=path`);
      return [a.slice(0, eq), a.slice(eq + 1)];
    }));
  } else {
    ({ model: modelDir, adapters: adapterPaths } = await prepareDefaults(resolve(args.cache!)));
  }

  const text = await TextModel.load(modelDir);
  const model = text.lora;
  for (const [name, path] of Object.entries(adapterPaths)) await model.registerAdapter(name, (await readAdapterFromPath(path)).adapter);

  const server = createServer((req, res) => void handle(text, req, res));
  server.listen(Number(args.port), args.host, () => {
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : args.port;
    // The test (and you) read this line to find the port.
    console.log(`listening on http://${args.host}:${port} (adapters: ${model.adapters.join(", ")}; provider: ${model.provider})`);
  });
  const stop = async (): Promise<void> => {
    server.close();
    await text.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
}

async function handle(text: TextModel, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const model = text.lora;
  const send = (status: number, body: unknown): void => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };
  try {
    if (req.method === "GET" && req.url === "/v1/adapters") return send(200, { adapters: model.adapters, provider: model.provider });
    if (req.method !== "POST" || (req.url !== "/v1/logits" && req.url !== "/v1/generate")) {
      return send(404, { error: "POST /v1/logits, POST /v1/generate or GET /v1/adapters" });
    }
    let raw = "";
    for await (const chunk of req) {
      raw += chunk;
      if (raw.length > 1_000_000) return send(413, { error: "request body over 1 MB" });
    }
    const body = JSON.parse(raw) as { adapter?: string | null; ids?: unknown; prompt?: unknown; max_new_tokens?: number; temperature?: number; seed?: number };
    const adapter = body.adapter ?? null;
    if (req.url === "/v1/generate") {
      const prompt = typeof body.prompt === "string" ? body.prompt : body.ids;
      if (typeof prompt !== "string" && !(Array.isArray(prompt) && prompt.every((x) => typeof x === "number"))) {
        return send(400, { error: 'body: expected {"ids": [token ids]} or {"prompt": "text"}, "adapter"?, "max_new_tokens"?, "temperature"?, "seed"?' });
      }
      const out = await text.generate(prompt as string | number[], {
        adapter, maxNewTokens: body.max_new_tokens ?? 32, ...(body.temperature !== undefined ? { temperature: body.temperature } : {}), ...(body.seed !== undefined ? { seed: body.seed } : {}),
      }).result;
      return send(200, { adapter, tokens: out.tokens, text: out.text, finish_reason: out.finishReason, ttft_ms: out.timings.ttftMs, tokens_per_s: out.timings.tokensPerSecond });
    }
    // One sequence gives one row of logits; a batch ([[...], [...]], rows of one length) gives one row per sequence.
    const ids = body.ids;
    const isRow = (r: unknown): r is number[] => Array.isArray(r) && r.length > 0 && r.every((x) => typeof x === "number");
    const batch = Array.isArray(ids) && ids.length > 0 && ids.every(isRow);
    if (!isRow(ids) && !batch) return send(400, { error: 'body: expected {"ids": [token ids]} (one sequence) or {"ids": [[...], [...]]} (a batch), "adapter"?: name' });
    if (batch && (ids as number[][]).some((r) => r.length !== (ids as number[][])[0]!.length)) {
      return send(400, { error: `body.ids: batch rows have ${[...new Set((ids as number[][]).map((r) => r.length))].join(", ")} tokens; send rows of one length (or one request per sequence)` });
    }
    const out = await model.run({ inputIds: ids as number[] | number[][] }, { adapter });
    const logits = batch ? (ids as number[][]).map((_, row) => Array.from(lastLogits(out, row))) : Array.from(lastLogits(out));
    send(200, { adapter: out.adapter, provider: out.provider, ms: out.ms, logits });
  } catch (err) {
    const status = err instanceof LoraportError || err instanceof SyntaxError ? 400 : 500;
    send(status, { error: err instanceof Error ? err.message : String(err) });
  }
}

main().catch((err: unknown) => {
  console.error(`serve-adapters: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
