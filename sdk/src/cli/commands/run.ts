import type { Command } from "commander";
import { LoraportError } from "../../errors.js";
import { LoraModel, lastLogits } from "../../runtime/lora-model.js";
import type { ExecutionProvider, ProviderRequest } from "../../runtime/providers.js";
import { readAdapterFromPath } from "../../runtime/read-adapter.js";
import { addLoralibOptions, loralibOptions, type LoralibCliOptions } from "../loralib-options.js";
import { progressBar } from "../progress-bar.js";

interface RunCliOptions extends LoralibCliOptions {
  readonly model: string;
  readonly adapter?: string;
  readonly ids: string;
  readonly provider: string;
  readonly json?: boolean;
}

/** `loraport run`: one forward pass of an exported model through ONNX Runtime, optionally with an adapter. */
export function registerRun(program: Command): void {
  const cmd = program
    .command("run")
    .description("run an exported model (loraport export) with ONNX Runtime and print the last position's logits")
    .requiredOption("--model <dir>", "folder written by 'loraport export'")
    .option("--adapter <path>", "PEFT adapter folder or loralib checkpoint (adapter-inputs models)")
    .requiredOption("--ids <list>", "token ids, comma-separated, e.g. 1,5,9")
    .option("--provider <p>", "execution provider: auto | cpu | cuda", "auto");
  addLoralibOptions(cmd)
    .option("--json", 'print {"logits": [...], "provider": "cpu"}')
    .action(async (opts: RunCliOptions) => {
      const ids = opts.ids.split(",").map((s) => s.trim());
      if (ids.some((s) => !/^\d+$/.test(s))) throw new LoraportError("E_USAGE", `--ids ${opts.ids}: expected comma-separated non-negative integers`);
      if (!["auto", "cpu", "cuda"].includes(opts.provider)) throw new LoraportError("E_USAGE", `--provider ${opts.provider}: expected auto, cpu or cuda`);
      const providers: ProviderRequest = opts.provider === "auto" ? "auto" : [opts.provider as ExecutionProvider];
      const bar = progressBar();
      const model = await LoraModel.load(opts.model, { executionProviders: providers, onProgress: bar.onProgress });
      try {
        bar.stop();
        if (model.providerNote) process.stderr.write(`loraport: ${model.providerNote}\n`);
        let adapter: string | null = null;
        if (opts.adapter) {
          const { adapter: a, notes } = await readAdapterFromPath(opts.adapter, loralibOptions(opts, model.manifest.lora.some((e) => e.fan_in_fan_out)));
          for (const n of notes) process.stderr.write(`loraport: ${n}\n`);
          await model.registerAdapter("cli", a);
          adapter = "cli";
        }
        const res = await model.run({ inputIds: ids.map(Number) }, { adapter });
        const logits = lastLogits(res);
        if (opts.json) {
          console.log(JSON.stringify({ logits: Array.from(logits), provider: res.provider }));
          return;
        }
        const top = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!).slice(0, 5);
        console.log(`provider: ${res.provider} · adapter: ${opts.adapter ?? "none (base)"} · ${logits.length} logits at the last position · ${res.ms.toFixed(1)} ms`);
        console.log(`top: ${top.map((i) => `${i}:${logits[i]!.toFixed(4)}`).join("  ")}`);
      } finally {
        await model.close();
      }
    });
}

