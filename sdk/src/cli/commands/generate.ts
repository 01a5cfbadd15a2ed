import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { FileMissingError, FormatError, LoraportError } from "../../errors.js";
import { TextModel, type Prompt } from "../../generation/text-model.js";
import type { ExecutionProvider, ProviderRequest } from "../../runtime/providers.js";
import { readAdapterFromPath } from "../../runtime/read-adapter.js";
import type { ChatMessage } from "../../tokenizer/index.js";
import { addLoralibOptions, loralibOptions, type LoralibCliOptions } from "../loralib-options.js";
import { progressBar } from "../progress-bar.js";

interface GenerateCliOptions extends LoralibCliOptions {
  readonly model: string;
  readonly adapter?: string;
  readonly prompt?: string;
  readonly ids?: string;
  readonly chat?: string;
  readonly maxNewTokens: string;
  readonly temperature?: string;
  readonly topK?: string;
  readonly topP?: string;
  readonly minP?: string;
  readonly repetitionPenalty?: string;
  readonly stop?: string[];
  readonly seed?: string;
  readonly provider: string;
  readonly json?: boolean;
}

function usage(message: string): LoraportError {
  return new LoraportError("E_USAGE", message);
}

function num(v: string | undefined, flag: string, integer = false): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || (integer && !Number.isSafeInteger(n))) throw usage(`${flag} ${v}: expected ${integer ? "an integer" : "a number"}`);
  return n;
}

function readChat(file: string): ChatMessage[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new FileMissingError(file, `${file}: no such file (--chat takes a JSON file of messages)`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new FormatError(file, `not valid JSON: ${(err as Error).message}`);
  }
  const messages = Array.isArray(raw) ? raw : (raw as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(messages) || messages.length === 0 || !messages.every((m) => typeof m === "object" && m !== null && typeof (m as ChatMessage).role === "string")) {
    throw new FormatError(file, 'expected a non-empty array of messages [{"role": "user", "content": "..."}] (or {"messages": [...]})');
  }
  return messages as ChatMessage[];
}

function promptOf(opts: GenerateCliOptions): Prompt {
  const given = [opts.prompt !== undefined, opts.ids !== undefined, opts.chat !== undefined].filter(Boolean).length;
  if (given !== 1) throw usage("give exactly one of --prompt TEXT, --ids 1,2,3 or --chat FILE.json");
  if (opts.prompt !== undefined) return opts.prompt;
  if (opts.chat !== undefined) return readChat(opts.chat);
  const ids = opts.ids!.split(",").map((s) => s.trim());
  if (ids.some((s) => !/^\d+$/.test(s))) throw usage(`--ids ${opts.ids}: expected comma-separated non-negative integers`);
  return ids.map(Number);
}

/** `--stop` values: a number is a token id, anything else a stop string. */
function stopOf(values: readonly string[] | undefined): (string | number)[] | undefined {
  if (!values || values.length === 0) return undefined;
  return values.map((v) => (/^\d+$/.test(v) ? Number(v) : v));
}

/** `loraport generate`: stream text from an exported causal LM, optionally with an adapter. */
export function registerGenerate(program: Command): void {
  const cmd = program
    .command("generate")
    .description("generate text with an exported causal LM (loraport export), optionally with a LoRA adapter; streams to stdout")
    .requiredOption("--model <dir>", "(required) folder written by 'loraport export' (with its KV cache)")
    .option("--adapter <path>", "PEFT adapter folder or loralib checkpoint (adapter-inputs exports)")
    .option("--prompt <text>", "prompt text (tokenized with the export's tokenizer)")
    .option("--ids <list>", "prompt token ids, comma-separated, e.g. 1,5,9")
    .option("--chat <file.json>", 'chat messages [{"role": "user", "content": "..."}], rendered with the chat template')
    .option("--max-new-tokens <n>", "new tokens at most", "64")
    .option("--temperature <t>", "0 = greedy (the default when no sampling option is given)")
    .option("--top-k <k>", "keep the k most likely tokens")
    .option("--top-p <p>", "nucleus sampling: keep the most likely tokens up to probability p")
    .option("--min-p <p>", "drop tokens below p × the top token's probability")
    .option("--repetition-penalty <x>", "penalise tokens already in the prompt or output (> 1 discourages)")
    .option("--stop <s...>", "stop strings, or token ids (numbers); repeatable")
    .option("--seed <s>", "sampler seed: the same seed gives the same tokens")
    .option("--provider <p>", "execution provider: auto | cpu | cuda", "auto");
  addLoralibOptions(cmd)
    .option("--json", 'print one object at the end: {"tokens", "text", "finish_reason", "provider", "ttft_ms", "tokens_per_s"}')
    .action(async (opts: GenerateCliOptions) => {
      if (!["auto", "cpu", "cuda"].includes(opts.provider)) throw usage(`--provider ${opts.provider}: expected auto, cpu or cuda`);
      const prompt = promptOf(opts);
      const sampling = {
        maxNewTokens: num(opts.maxNewTokens, "--max-new-tokens", true)!,
        ...defined("temperature", num(opts.temperature, "--temperature")),
        ...defined("topK", num(opts.topK, "--top-k", true)),
        ...defined("topP", num(opts.topP, "--top-p")),
        ...defined("minP", num(opts.minP, "--min-p")),
        ...defined("repetitionPenalty", num(opts.repetitionPenalty, "--repetition-penalty")),
        ...defined("seed", num(opts.seed, "--seed", true)),
        ...defined("stop", stopOf(opts.stop)),
      };
      const providers: ProviderRequest = opts.provider === "auto" ? "auto" : [opts.provider as ExecutionProvider];
      const bar = progressBar(process.stderr.isTTY === true && !opts.json);
      const model = await TextModel.load(opts.model, { executionProviders: providers, onProgress: bar.onProgress });
      try {
        bar.stop();
        if (model.lora.providerNote && opts.provider === "cuda") process.stderr.write(`loraport: ${model.lora.providerNote}\n`);
        let adapter: string | null = null;
        if (opts.adapter) {
          const { adapter: a, notes } = await readAdapterFromPath(opts.adapter, loralibOptions(opts, model.lora.manifest.lora.some((e) => e.fan_in_fan_out)));
          if (!opts.json) for (const n of notes) process.stderr.write(`loraport: ${n}\n`);
          await model.registerAdapter("cli", a);
          adapter = "cli";
        }
        // Ctrl-C ends the generation cleanly (finish reason "abort") instead of killing the worker mid-step.
        const abort = new AbortController();
        const onSigint = (): void => abort.abort();
        process.once("SIGINT", onSigint);
        try {
          const stream = model.generate(prompt, { ...sampling, adapter, signal: abort.signal });
          if (!opts.json) for await (const d of stream) process.stdout.write(d.text);
          const res = await stream.result;
          if (opts.json) {
            console.log(JSON.stringify({
              tokens: res.tokens, text: res.text, finish_reason: res.finishReason, provider: model.lora.provider,
              ttft_ms: round(res.timings.ttftMs), tokens_per_s: round(res.timings.tokensPerSecond),
            }));
          } else {
            process.stdout.write("\n");
            if (process.stderr.isTTY) {
              process.stderr.write(`loraport: ${res.tokens.length} tokens · ${res.finishReason} · first token ${res.timings.ttftMs.toFixed(0)} ms · ${res.timings.tokensPerSecond.toFixed(1)} tokens/s · ${model.lora.provider}\n`);
            }
          }
        } finally {
          process.off("SIGINT", onSigint);
        }
      } finally {
        await model.close();
      }
    });
}

function defined<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
