/** `loraport train`: fine-tune a LoRA adapter with a train-step artifact on JSONL data; writes a PEFT folder. */
import { existsSync, readFileSync } from "node:fs";
import type { Command } from "commander";
import { FileMissingError, LoraportError } from "../../errors.js";
import { parseJsonl, type TrainExample } from "../../training/data.js";
import { readTrainManifest } from "../../training/manifest.js";
import type { ScheduleKind } from "../../training/schedule.js";
import { tokenizeTexts } from "../../training/tokenize.js";
import { Trainer } from "../../training/trainer.js";
import { progressBar } from "../progress-bar.js";
import { assertOutputNotInput } from "../../internal/output-guard.js";

interface TrainCliOptions {
  artifact: string;
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
}

function num(flag: string, v: string | undefined, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || (integer ? !Number.isInteger(x) || x < 1 : x < 0)) throw new LoraportError("E_USAGE", `${flag} ${v}: expected a ${integer ? "positive integer" : "non-negative number"}`);
  return x;
}

/** Examples from JSONL: ids as given, `text` lines through the artifact's tokenizer. */
async function readData(file: string, artifact: string): Promise<TrainExample[]> {
  if (!existsSync(file)) throw new FileMissingError(file);
  const { examples } = parseJsonl(readFileSync(file, "utf8"), file);
  const texts = examples.filter((e): e is { text: string; line: number } => "text" in e);
  if (texts.length === 0) return examples as TrainExample[];
  const ids = await tokenizeTexts(artifact, readTrainManifest(artifact), texts, file);
  let k = 0;
  return examples.map((e) => ("text" in e ? { input_ids: ids[k++]! } : e));
}

export function registerTrain(program: Command): void {
  program
    .command("train")
    .description("fine-tune a LoRA adapter with a train-step artifact (loraport export --mode train-step) on JSONL data")
    .requiredOption("--artifact <dir>", "train-step artifact folder")
    .requiredOption("--data <file.jsonl>", 'one example per line: {"input_ids": [...], "labels"?: [...], "attention_mask"?: [...]} or {"text": "..."} (needs a tokenizer)')
    .requiredOption("--out <dir>", "where to write the trained adapter (PEFT folder)")
    .option("--steps <n>", "optimizer steps (default: one epoch)")
    .option("--epochs <n>", "epochs when --steps is not given", "1")
    .option("--lr <x>", "peak learning rate", "1e-3")
    .option("--batch-size <n>", "examples per micro-batch", "8")
    .option("--schedule <kind>", "constant | linear | cosine", "constant")
    .option("--warmup <n>", "warm-up steps", "0")
    .option("--grad-accum <n>", "micro-batches per optimizer step", "1")
    .option("--checkpoint <file>", "checkpoint file (safetensors), rewritten atomically")
    .option("--checkpoint-every <n>", "checkpoint every N steps (needs --checkpoint)")
    .option("--resume", "continue from --checkpoint")
    .option("--seed <n>", "data shuffling seed", "0")
    .option("--provider <p>", "auto | cpu | cuda", "auto")
    .option("--json", "print the result as JSON")
    .action(async (o: TrainCliOptions) => {
      const schedule = (o.schedule ?? "constant") as ScheduleKind;
      if (!["constant", "linear", "cosine"].includes(schedule)) throw new LoraportError("E_USAGE", `--schedule ${o.schedule}: expected constant, linear or cosine`);
      if (o.resume && !o.checkpoint) throw new LoraportError("E_USAGE", "--resume needs --checkpoint <file>");
      if (o.checkpointEvery && !o.checkpoint) throw new LoraportError("E_USAGE", "--checkpoint-every needs --checkpoint <file>");
      const provider = o.provider ?? "auto";
      if (!["auto", "cpu", "cuda"].includes(provider)) throw new LoraportError("E_USAGE", `--provider ${provider}: expected auto, cpu or cuda`);
      assertOutputNotInput(o.out, [{ flag: "--artifact", path: o.artifact }, { flag: "--data", path: o.data }]);
      const data = await readData(o.data, o.artifact);
      const trainer = await Trainer.load(o.artifact, {
        executionProviders: provider === "auto" ? "auto" : [provider as "cpu" | "cuda"],
        ...(o.resume && o.checkpoint ? { checkpoint: o.checkpoint } : {}),
      });
      if (trainer.providerNote) process.stderr.write(`loraport: ${trainer.providerNote}\n`);
      const bar = progressBar();
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
          signal: ctl.signal,
          onProgress: (e) => {
            losses.push(e.loss);
            bar.onProgress({ ...e, message: `loss ${e.loss.toFixed(4)} · ${Math.round(e.tokensPerSecond)} tok/s` });
          },
        });
        bar.stop();
        await trainer.saveAdapter(o.out);
        if (o.json) console.log(JSON.stringify({ out: o.out, steps: res.steps, firstLoss: losses[0], finalLoss: res.finalLoss, losses }));
        else console.log(`trained ${res.steps} steps on ${trainer.provider}: loss ${losses[0]?.toFixed(4)} → ${res.finalLoss.toFixed(4)}; adapter written to ${o.out}`);
      } finally {
        bar.stop();
        process.off("SIGINT", onSigint);
        await trainer.close();
      }
    });
}
