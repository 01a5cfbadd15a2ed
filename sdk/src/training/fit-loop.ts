/**
 * The training loop (runs in the worker). The data order and the learning rate depend only on the seed, the
 * epoch and the step within the fit, so a run resumed from a checkpoint takes exactly the steps an unbroken one
 * would have taken.
 *
 * Gradient accumulation: N micro-batches through grad_step.onnx, gradients averaged, one apply_step.onnx —
 * PyTorch's `(loss / N).backward()` per micro-batch then `optimizer.step()`. Without accumulation the fused
 * train_step.onnx does it all in one run.
 */
import { makeBatch, shuffledOrder, type Batch, type TrainExample } from "./data.js";
import type { TrainManifest } from "./manifest.js";
import { learningRate } from "./schedule.js";
import { writeCheckpoint } from "./state.js";
import type { StepRunner } from "./step-runner.js";
import type { StepRecord, WireFitOptions, WireState } from "./worker-protocol.js";

export interface FitHooks {
  onStep(record: StepRecord, totalSteps: number): void;
  onEval(step: number, loss: number): void;
  onCheckpoint(step: number, path: string): void;
  /** True once the caller's AbortSignal fired; checked between steps. */
  aborted(): boolean;
}

export interface FitPlan {
  readonly microPerEpoch: number;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
}

export function planFit(examples: number, o: Pick<WireFitOptions, "batchSize" | "gradientAccumulation" | "epochs" | "maxSteps">): FitPlan {
  const microPerEpoch = Math.ceil(examples / o.batchSize);
  const stepsPerEpoch = Math.ceil(microPerEpoch / o.gradientAccumulation);
  return { microPerEpoch, stepsPerEpoch, totalSteps: o.maxSteps ?? o.epochs * stepsPerEpoch };
}

/** Micro-batches of the fit's `k`-th step (0-based within the fit). */
export function stepBatches(data: readonly TrainExample[], plan: FitPlan, o: WireFitOptions, k: number, task: TrainManifest["task"]): { epoch: number; batches: Batch[] } {
  const epoch = Math.floor(k / plan.stepsPerEpoch);
  const within = k % plan.stepsPerEpoch;
  const order = o.shuffle ? shuffledOrder(data.length, (o.seed * 1_000_003 + epoch) >>> 0) : data.map((_, i) => i);
  const batches: Batch[] = [];
  const first = within * o.gradientAccumulation;
  const last = Math.min(first + o.gradientAccumulation, plan.microPerEpoch);
  for (let mb = first; mb < last; mb++) {
    const idx = order.slice(mb * o.batchSize, (mb + 1) * o.batchSize);
    batches.push(makeBatch(idx.map((i) => data[i]!), task));
  }
  return { epoch, batches };
}

export async function evaluateLoss(runner: StepRunner, params: readonly Float32Array[], data: readonly TrainExample[], batchSize: number, task: TrainManifest["task"]): Promise<number> {
  // Weighted by scored labels so the result is the mean loss over the whole set, not a mean of batch means.
  let sum = 0;
  let weight = 0;
  for (let i = 0; i < data.length; i += batchSize) {
    const batch = makeBatch(data.slice(i, i + batchSize), task);
    if (batch.scored === 0) continue;
    sum += (await runner.evalLoss(params, batch)) * batch.scored;
    weight += batch.scored;
  }
  return weight > 0 ? sum / weight : Number.NaN;
}

function addInto(acc: Float32Array[], add: readonly Float32Array[]): void {
  acc.forEach((a, i) => {
    const b = add[i]!;
    for (let j = 0; j < a.length; j++) a[j]! += b[j]!;
  });
}

export async function runFit(runner: StepRunner, manifest: TrainManifest, start: WireState, data: readonly TrainExample[], evalData: readonly TrainExample[] | undefined,
  o: WireFitOptions, hooks: FitHooks): Promise<{ state: WireState; aborted: boolean }> {
  const plan = planFit(data.length, o);
  let state = start;
  while (state.step - state.fitStartStep < plan.totalSteps) {
    if (hooks.aborted()) return { state, aborted: true };
    const k = state.step - state.fitStartStep;
    const { epoch, batches } = stepBatches(data, plan, o, k, manifest.task);
    const lr = learningRate(o.lrSchedule, o.lr, k, plan.totalSteps);
    const prevStep = state.step;
    const t0 = performance.now();
    let loss: number;
    if (batches.length === 1) {
      const r = await runner.trainStep(state, lr, batches[0]!);
      loss = r.loss;
      state = r.state;
    } else {
      let sumLoss = 0;
      let grads: Float32Array[] | undefined;
      for (const b of batches) {
        const r = await runner.gradStep(state.params, b);
        sumLoss += r.loss;
        if (!grads) grads = r.grads.map((g) => new Float32Array(g));
        else addInto(grads, r.grads);
      }
      const inv = 1 / batches.length;
      for (const g of grads!) for (let j = 0; j < g.length; j++) g[j]! *= inv;
      loss = sumLoss * inv;
      state = await runner.applyStep(state, grads!, lr);
    }
    // new_step comes back from the graph as f32; keep the integer count exact on this side.
    state = { ...state, step: prevStep + 1, fitStartStep: start.fitStartStep };
    const ms = performance.now() - t0;
    const tokens = batches.reduce((s, b) => s + b.tokens, 0);
    hooks.onStep({ step: state.step, epoch, loss, lr, tokensPerSecond: (tokens * 1000) / ms, stepMs: ms }, plan.totalSteps);
    const done = state.step - state.fitStartStep;
    if (o.evalEvery && evalData && done % o.evalEvery === 0) hooks.onEval(state.step, await evaluateLoss(runner, state.params, evalData, o.evalBatchSize, manifest.task));
    if (o.checkpointEvery && o.checkpointPath && (done % o.checkpointEvery === 0 || done === plan.totalSteps)) {
      await writeCheckpoint(o.checkpointPath, manifest.params, state);
      hooks.onCheckpoint(state.step, o.checkpointPath);
    }
  }
  return { state, aborted: false };
}
