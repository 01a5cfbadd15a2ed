/**
 * `loraport train`: fine-tune a LoRA adapter on JSONL data; writes a PEFT folder. `--engine ort` (default) runs a
 * train-step artifact in onnxruntime-node; `--engine torch` runs PEFT + torch.distributed under torchrun.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { FileMissingError, FormatError, LoraportError } from "../../errors.js";
import { parseJsonl, type TrainExample } from "../../training/data.js";
import { readTrainManifest } from "../../training/manifest.js";
import type { ScheduleKind } from "../../training/schedule.js";
import { tokenizeTexts, tokenizeWith } from "../../training/tokenize.js";
import { TorchTrainer, type TorchStrategy } from "../../training/torch-engine.js";
import { Trainer } from "../../training/trainer.js";
import { progressReporter } from "../progress-bar.js";
import { assertOutputNotInput } from "../../internal/output-guard.js";

interface TrainCliOptions {
  engine?: string;
  artifact?: string;
  base?: string;
  adapter?: string;
  r?: string;
  alpha?: string;
  targetModules?: string;
  rslora?: boolean;
  loraDropout?: string;
  nprocPerNode?: string;
  nnodes?: string;
  nodeRank?: string;
  rdzvEndpoint?: string;
  strategy?: string;
  maxGradNorm?: string;
  data: string;
  out: string;
  steps?: string;
  epochs?: string;
  lr?: string;
  batchSize?: string;
  schedule?: string;
  warmup?: string;
  gradAccum?: string;
  checkpoint?: string;
  checkpointEvery?: string;
  resume?: boolean;
  seed?: string;
  provider?: string;
  json?: boolean;
  progress?: boolean;
}

function num(flag: string, v: string | undefined, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || (integer ? !Number.isInteger(x) || x < 1 : x < 0)) throw new LoraportError("E_USAGE", `${flag} ${v}: expected a ${integer ? "positive integer" : "non-negative number"}`);
  return x;
}

/** Examples from JSONL: ids as given, `text` lines through the artifact's tokenizer (ort) or the base folder's (torch). */
async function readData(file: string, source: { artifact: string } | { base: string }): Promise<TrainExample[]> {
  if (!existsSync(file)) throw new FileMissingError(file);
  const { examples } = parseJsonl(readFileSync(file, "utf8"), file);
  const texts = examples.filter((e): e is { text: string; line: number } => "text" in e);
  if (texts.length === 0) return examples as TrainExample[];
  let ids: number[][];
  if ("artifact" in source) ids = await tokenizeTexts(source.artifact, readTrainManifest(source.artifact), texts, file);
  else {
    const tok = join(source.base, "tokenizer.json");
    if (!existsSync(tok)) throw new FormatError(file, `line ${texts[0]!.line}: has "text" but the base model folder ${source.base} has no tokenizer.json; give "input_ids" instead`);
    ids = await tokenizeWith(tok, texts, file);
  }
  let k = 0;
  return examples.map((e) => ("text" in e ? { input_ids: ids[k++]! } : e));
}

export function registerTrain(program: Command): void {
  program
    .command("train")
    .description("fine-tune a LoRA adapter on JSONL data: --engine ort with a train-step artifact (loraport export --mode train-step), or --engine torch with a base model folder (PEFT + torchrun)")
    .option("--engine <e>", "ort (train-step graphs in onnxruntime-node) | torch (PEFT + torch.distributed under torchrun)", "ort")
    .option("--artifact <dir>", "ort: train-step artifact folder")
    .option("--base <dir>", "torch: Hugging Face base model folder")
    .option("--adapter <dir>", "torch: start from this PEFT adapter folder")
    .option("--r <n>", "torch: LoRA rank", "8")
    .option("--alpha <x>", "torch: LoRA alpha", "16")
    .option("--target-modules <a,b>", "torch: modules to adapt (default: PEFT's per-architecture default)")
    .option("--rslora", "torch: rsLoRA scaling (alpha / sqrt(r))")
    .option("--lora-dropout <p>", "torch: LoRA dropout (> 0: train mode, not bit-equal to --engine ort)", "0")
    .option("--nproc-per-node <n>", "torch: processes (ranks) on this node", "1")
    .option("--nnodes <n>", "torch: nodes (each runs this command with its --node-rank)", "1")
    .option("--node-rank <n>", "torch: this node's rank")
    .option("--rdzv-endpoint <host:port>", "torch: rendezvous endpoint (node 0) for more than one node")
    .option("--strategy <s>", "torch: ddp | fsdp", "ddp")
    .option("--max-grad-norm <x>", "torch: clip the gradient norm before each step")
    .requiredOption("--data <file.jsonl>", 'one example per line: {"input_ids": [...], "labels"?: [...], "attention_mask"?: [...]} or {"text": "..."} (needs a tokenizer)')
    .requiredOption("--out <dir>", "where to write the trained adapter (PEFT folder)")
    .option("--steps <n>", "optimizer steps (default: one epoch)")
    .option("--epochs <n>", "epochs when --steps is not given", "1")
    .option("--lr <x>", "peak learning rate", "1e-3")
    .option("--batch-size <n>", "examples per micro-batch (torch: the global batch, split over the ranks)", "8")
    .option("--schedule <kind>", "constant | linear | cosine", "constant")
    .option("--warmup <n>", "warm-up steps", "0")
    .option("--grad-accum <n>", "micro-batches per optimizer step", "1")
    .option("--checkpoint <file>", "checkpoint file (safetensors), rewritten atomically")
    .option("--checkpoint-every <n>", "checkpoint every N steps (needs --checkpoint)")
    .option("--resume", "continue from --checkpoint")
    .option("--seed <n>", "data shuffling seed", "0")
    .option("--provider <p>", "auto | cpu | cuda", "auto")
    .option("--json", "print the result as JSON")
    .option("--progress", "progress as phase lines on stderr (step, loss, lr), also off a terminal or with --json (default: a bar on a terminal only)")
    .action(async (o: TrainCliOptions) => {
      const schedule = (o.schedule ?? "constant") as ScheduleKind;
      if (!["constant", "linear", "cosine"].includes(schedule)) throw new LoraportError("E_USAGE", `--schedule ${o.schedule}: expected constant, linear or cosine`);
      if (o.resume && !o.checkpoint) throw new LoraportError("E_USAGE", "--resume needs --checkpoint <file>");
      if (o.checkpointEvery && !o.checkpoint) throw new LoraportError("E_USAGE", "--checkpoint-every needs --checkpoint <file>");
      const provider = o.provider ?? "auto";
      if (!["auto", "cpu", "cuda"].includes(provider)) throw new LoraportError("E_USAGE", `--provider ${provider}: expected auto, cpu or cuda`);
      assertOutputNotInput(o.out, [{ flag: "--artifact", path: o.artifact }, { flag: "--data", path: o.data }]);
      const engine = o.engine ?? "ort";
      if (engine !== "ort" && engine !== "torch") throw new LoraportError("E_USAGE", `--engine ${engine}: expected ort or torch`);
      if (engine === "ort" && !o.artifact) throw new LoraportError("E_USAGE", "--engine ort needs --artifact <dir> (a train-step artifact: loraport export --mode train-step)");
      if (engine === "ort" && o.base) throw new LoraportError("E_USAGE", "--base is for --engine torch; --engine ort trains the model its --artifact was exported from");
      if (engine === "torch" && !o.base) throw new LoraportError("E_USAGE", "--engine torch needs --base <dir> (a Hugging Face model folder)");
      if (engine === "torch" && o.artifact) throw new LoraportError("E_USAGE", "--artifact is for --engine ort; --engine torch takes --base <dir>");
      if (engine === "ort" && (o.maxGradNorm !== undefined || o.strategy !== "ddp" || o.nprocPerNode !== "1" || o.nnodes !== "1" || o.rdzvEndpoint)) {
        throw new LoraportError("E_USAGE", "--max-grad-norm, --strategy, --nproc-per-node, --nnodes and --rdzv-endpoint are for --engine torch");
      }
      if (o.nodeRank !== undefined && !(Number.isInteger(Number(o.nodeRank)) && Number(o.nodeRank) >= 0)) throw new LoraportError("E_USAGE", `--node-rank ${o.nodeRank}: expected a non-negative integer`);
      const strategy = o.strategy ?? "ddp";
      if (strategy !== "ddp" && strategy !== "fsdp") throw new LoraportError("E_USAGE", `--strategy ${strategy}: expected ddp or fsdp`);
      const data = await readData(o.data, engine === "ort" ? { artifact: o.artifact! } : { base: o.base! });
      const resume = o.resume && o.checkpoint ? { checkpoint: o.checkpoint } : {};
      const trainer = engine === "ort"
        ? await Trainer.load(o.artifact!, { executionProviders: provider === "auto" ? "auto" : [provider as "cpu" | "cuda"], ...resume })
        : await TorchTrainer.load({
          base: o.base!, ...(o.adapter ? { adapter: o.adapter } : {}), ...resume,
          lora: {
            r: num("--r", o.r, true)!, alpha: num("--alpha", o.alpha, false)!, rslora: o.rslora ?? false, dropout: num("--lora-dropout", o.loraDropout, false)!,
            ...(o.targetModules ? { targetModules: o.targetModules.split(",").filter(Boolean) } : {}),
          },
          nprocPerNode: num("--nproc-per-node", o.nprocPerNode, true)!, nnodes: num("--nnodes", o.nnodes, true)!,
          ...(o.nodeRank !== undefined ? { nodeRank: Number(o.nodeRank) } : {}), ...(o.rdzvEndpoint ? { rdzvEndpoint: o.rdzvEndpoint } : {}),
          strategy: strategy as TorchStrategy,
        });
      if (trainer instanceof Trainer && trainer.providerNote) process.stderr.write(`loraport: ${trainer.providerNote}\n`);
      const bar = progressReporter(o);
      const losses: number[] = [];
      const ctl = new AbortController();
      const onSigint = (): void => ctl.abort();
      process.once("SIGINT", onSigint);
      try {
        const steps = num("--steps", o.steps, true);
        const res = await trainer.fit(data, {
          ...(steps !== undefined ? { maxSteps: steps } : { epochs: num("--epochs", o.epochs, true)! }),
          lr: num("--lr", o.lr, false)!,
          batchSize: num("--batch-size", o.batchSize, true)!,
          lrSchedule: { kind: schedule, warmupSteps: num("--warmup", o.warmup, false)! },
          gradientAccumulation: num("--grad-accum", o.gradAccum, true)!,
          ...(o.checkpoint ? { checkpointPath: o.checkpoint, checkpointEvery: num("--checkpoint-every", o.checkpointEvery, true) ?? Number.MAX_SAFE_INTEGER } : {}),
          seed: num("--seed", o.seed, false)!,
          ...(o.maxGradNorm !== undefined ? { maxGradNorm: num("--max-grad-norm", o.maxGradNorm, false)! } : {}),
          signal: ctl.signal,
          onProgress: (e) => {
            losses.push(e.loss);
            bar.onProgress({ ...e, message: `loss ${e.loss.toFixed(4)} · ${Math.round(e.tokensPerSecond)} tok/s` });
          },
        });
        bar.stop();
        await trainer.saveAdapter(o.out);
        const where = trainer instanceof Trainer ? trainer.provider : `${trainer.worldSize} torch process${trainer.worldSize > 1 ? "es" : ""} (${strategy})`;
        if (o.json) console.log(JSON.stringify({ out: o.out, engine, steps: res.steps, firstLoss: losses[0], finalLoss: res.finalLoss, losses }));
        else console.log(`trained ${res.steps} steps on ${where}: loss ${losses[0]?.toFixed(4)} → ${res.finalLoss.toFixed(4)}; adapter written to ${o.out}`);
      } finally {
        bar.stop();
        process.off("SIGINT", onSigint);
        await trainer.close();
      }
    });
}
