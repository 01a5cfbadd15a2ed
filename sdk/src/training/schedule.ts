/**
 * Learning-rate schedules, computed in TypeScript because `lr` is a graph input. Each matches transformers'
 * `get_{constant,linear,cosine}_schedule_with_warmup` lambda: the factor for optimizer step `s` (0-based) times
 * the peak learning rate.
 */
import { LoraportError } from "../errors.js";

export type LrSchedule =
  | { readonly kind: "constant"; readonly warmupSteps?: number }
  | { readonly kind: "linear"; readonly warmupSteps?: number }
  | { readonly kind: "cosine"; readonly warmupSteps?: number };

export type ScheduleKind = LrSchedule["kind"];

/** Learning rate of 0-based optimizer step `step` out of `totalSteps`, peak `lr`. */
export function learningRate(schedule: LrSchedule, lr: number, step: number, totalSteps: number): number {
  const warmup = schedule.warmupSteps ?? 0;
  if (!Number.isInteger(warmup) || warmup < 0) throw new LoraportError("E_CONFIG", `lrSchedule.warmupSteps: expected a non-negative integer, got ${warmup}`);
  if (step < warmup) return (lr * step) / Math.max(1, warmup);
  switch (schedule.kind) {
    case "constant":
      return lr;
    case "linear":
      return lr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmup));
    case "cosine": {
      const progress = (step - warmup) / Math.max(1, totalSteps - warmup);
      return lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
    }
    default:
      throw new LoraportError("E_CONFIG", `lrSchedule.kind: expected constant, linear or cosine, got ${JSON.stringify((schedule as { kind: unknown }).kind)}`);
  }
}
