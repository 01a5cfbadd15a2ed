import type { Command } from "commander";
import { LoraportError } from "../../errors.js";
import type { ExecutionProvider, ProviderRequest } from "../../runtime/providers.js";
import { startServer, DEFAULT_MAX_BODY_BYTES, type RunningServer } from "../../serving/http/index.js";
import { LocalEngine, type LocalEngineOptions } from "../../serving/local-engine.js";
import { addLoralibOptions, loralibOptions, type LoralibCliOptions } from "../loralib-options.js";

interface ServeCliOptions extends LoralibCliOptions {
  readonly model: string;
  readonly adapter?: string[];
  readonly host: string;
  readonly port: string;
  readonly apiKey?: string;
  readonly name?: string;
  readonly maxLoras?: string;
  readonly maxCpuLoras?: string;
  readonly maxBatchSize?: string;
  readonly maxQueue?: string;
  readonly maxBodyBytes: string;
  readonly provider: string;
}

function usage(message: string): LoraportError {
  return new LoraportError("E_USAGE", message);
}

function int(v: string | undefined, flag: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isSafeInteger(n) || n < min) throw usage(`${flag} ${v}: expected an integer ≥ ${min}`);
  return n;
}

/** `--adapter name=path` specs, checked before anything loads. */
export function parseAdapterSpecs(specs: readonly string[] | undefined): [name: string, path: string][] {
  const out: [string, string][] = [];
  for (const spec of specs ?? []) {
    const eq = spec.indexOf("=");
    if (eq <= 0 || eq === spec.length - 1) throw usage(`--adapter ${spec}: expected name=path (e.g. --adapter support=adapters/support)`);
    const name = spec.slice(0, eq);
    if (out.some(([n]) => n === name)) throw usage(`--adapter ${spec}: the name '${name}' is given twice`);
    out.push([name, spec.slice(eq + 1)]);
  }
  return out;
}

/** Resolves on the first SIGINT or SIGTERM; a second one during shutdown exits at once. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const first = (sig: NodeJS.Signals): void => {
      process.off("SIGINT", first);
      process.off("SIGTERM", first);
      const again = (): void => process.exit(1);
      process.once("SIGINT", again);
      process.once("SIGTERM", again);
      resolve(sig);
    };
    process.on("SIGINT", first);
    process.on("SIGTERM", first);
  });
}

/** `loraport serve`: an OpenAI-compatible HTTP server (as vLLM's) over the local engine. */
export function registerServe(program: Command): void {
  const cmd = program
    .command("serve")
    .description("serve an exported causal LM with OpenAI's API (as vLLM does): /v1/completions, /v1/chat/completions (streamed with stream: true), /v1/models, /v1/load_lora_adapter, /v1/unload_lora_adapter, /health, /metrics; the request's `model` names an adapter or the base")
    .requiredOption("--model <dir>", "(required) folder written by 'loraport export' (adapter-inputs, or merged: one adapter, no overhead)")
    .option("--adapter <name=path...>", "an adapter to serve as `model: name`: a PEFT folder or a loralib checkpoint; repeatable")
    .option("--host <host>", "interface to bind", "127.0.0.1")
    .option("--port <n>", "port (0 = any free port)", "8000")
    .option("--api-key <key>", "require 'Authorization: Bearer <key>' on /v1/* (default: $LORAPORT_API_KEY, if set)")
    .option("--name <name>", "the base model's name in the API (default: the export folder's name)")
    .option("--max-loras <n>", "adapters registered in the session at once (LRU beyond; default 8)")
    .option("--max-cpu-loras <n>", "adapters kept parsed in memory (default 32)")
    .option("--max-batch-size <n>", "sequences generated at once (default 16)")
    .option("--max-queue <n>", "requests waiting at most; one more gets 429 (default 64)")
    .option("--max-body-bytes <n>", "largest request body (413 beyond)", String(DEFAULT_MAX_BODY_BYTES))
    .option("--provider <p>", "execution provider: auto | cpu | cuda", "auto");
  addLoralibOptions(cmd)
    .action(async (opts: ServeCliOptions) => {
      if (!["auto", "cpu", "cuda"].includes(opts.provider)) throw usage(`--provider ${opts.provider}: expected auto, cpu or cuda`);
      const adapters = parseAdapterSpecs(opts.adapter);
      const port = int(opts.port, "--port", 0)!;
      if (port > 65535) throw usage(`--port ${opts.port}: expected 0 to 65535`);
      const maxBodyBytes = int(opts.maxBodyBytes, "--max-body-bytes", 1)!;
      const apiKey = opts.apiKey ?? (process.env["LORAPORT_API_KEY"] || undefined);
      const { fanInFanOut: _fromBase, ...loralib } = loralibOptions(opts, false); // the registry takes fan_in_fan_out from the export
      const providers: ProviderRequest = opts.provider === "auto" ? "auto" : [opts.provider as ExecutionProvider];
      const engineOptions: LocalEngineOptions = {
        executionProviders: providers,
        ...(opts.name !== undefined ? { name: opts.name } : {}),
        ...defined("maxLoras", int(opts.maxLoras, "--max-loras", 1)),
        ...defined("maxCpuLoras", int(opts.maxCpuLoras, "--max-cpu-loras", 1)),
        ...defined("maxBatchSize", int(opts.maxBatchSize, "--max-batch-size", 1)),
        ...defined("maxQueue", int(opts.maxQueue, "--max-queue", 0)),
        ...(Object.keys(loralib).length > 0 ? { loralib } : {}),
      };

      const engine = await LocalEngine.start(opts.model, engineOptions);
      let server: RunningServer | undefined;
      try {
        for (const [name, path] of adapters) await engine.loadAdapter(name, path);
        server = await startServer(engine, {
          host: opts.host, port, maxBodyBytes, maxModelLen: engine.model.lora.manifest.generation?.max_positions ?? null,
          roots: { [engine.name]: opts.model, ...Object.fromEntries(adapters) },
          ...(apiKey !== undefined ? { apiKey } : {}),
        });
        const served = engine.models();
        process.stderr.write(`loraport: serving ${served.base}${served.adapters.length ? ` and adapters ${served.adapters.join(", ")}` : ""} on ${engine.model.lora.provider}${apiKey ? " (API key required)" : ""}\n`);
        console.log(`listening on ${server.url}`);
        await untilSignal();
      } finally {
        await server?.close();
        await engine.close();
      }
    });
}

function defined<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
