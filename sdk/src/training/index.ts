/** Training LoRA adapters from TypeScript with standard-op train-step graphs (artifact from the sidecar's exporter). */
export { Trainer, type TrainerOptions, type FitOptions, type FitResult, type TrainProgress } from "./trainer.js";
export { learningRate, type LrSchedule, type ScheduleKind } from "./schedule.js";
export { readTrainManifest, TRAIN_MANIFEST_NAME, type TrainManifest, type TrainParamInfo, type TrainTask } from "./manifest.js";
export { parseJsonl, type TrainExample } from "./data.js";
export { readCheckpoint as readTrainCheckpoint, writeCheckpoint as writeTrainCheckpoint, type TrainState } from "./state.js";
export type { StepRecord } from "./worker-protocol.js";
export { TorchTrainer, type TorchTrainerOptions, type TorchFitOptions, type TorchLoraConfig, type TorchStrategy } from "./torch-engine.js";
export { loadTrainer, type EngineOptions, type TrainEngine } from "./engine.js";
