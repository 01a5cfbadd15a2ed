/**
 * One entry for both training engines: `ort` (default; the exported train-step graphs in onnxruntime-node, one
 * machine) or `torch` (PEFT + torch.distributed under torchrun: DDP or FSDP, many processes or nodes).
 */
import { TorchTrainer, type TorchTrainerOptions } from "./torch-engine.js";
import { Trainer, type TrainerOptions } from "./trainer.js";

export type TrainEngine = "ort" | "torch";

export type EngineOptions =
  | ({ readonly engine?: "ort"; readonly artifact: string } & TrainerOptions)
  | ({ readonly engine: "torch" } & TorchTrainerOptions);

/** A Trainer (ORT) or a TorchTrainer; both take the same examples and FitOptions and write a PEFT folder. */
export async function loadTrainer(options: EngineOptions): Promise<Trainer | TorchTrainer> {
  if (options.engine === "torch") return TorchTrainer.load(options);
  return Trainer.load(options.artifact, options);
}
