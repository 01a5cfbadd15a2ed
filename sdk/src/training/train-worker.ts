/**
 * The Trainer's worker thread: owns the ONNX Runtime sessions and runs the training loop, because
 * onnxruntime-node's `run` blocks its thread (the main thread keeps its timers, progress bar and signals).
 */
import { parentPort } from "node:worker_threads";
import { LoraportError } from "../errors.js";
import { makeBatch } from "./data.js";
import { evaluateLoss, runFit } from "./fit-loop.js";
import { readTrainManifest, type TrainManifest } from "./manifest.js";
import { StepRunner } from "./step-runner.js";
import type { WireState, WorkerMessage, WorkerRequest } from "./worker-protocol.js";

if (!parentPort) throw new Error("train-worker must run as a worker thread");
const port = parentPort;

let runner: StepRunner | undefined;
let manifest: TrainManifest | undefined;

function post(msg: WorkerMessage): void {
  port.postMessage(msg);
}

function transferOf(state: WireState | undefined): ArrayBuffer[] {
  if (!state) return [];
  return [...state.params, ...state.m, ...state.v].map((a) => a.buffer as ArrayBuffer);
}

async function handle(req: WorkerRequest): Promise<void> {
  switch (req.op) {
    case "init": {
      manifest = readTrainManifest(req.dir);
      runner = new StepRunner(req.dir, manifest, req.providers, req.intraOpNumThreads);
      await runner.session("train_step"); // fail at load, not at the first step
      post({ type: "result", id: req.id, ok: true, provider: req.providers[0] ?? "cpu" });
      return;
    }
    case "fit": {
      if (!runner || !manifest) throw new Error("worker not initialised");
      const flag = new Int32Array(req.abort);
      let last: WireState = req.state;
      try {
        const { state, aborted } = await runFit(runner, manifest, req.state, req.data, req.evalData, req.options, {
          onStep: (record, totalSteps) => post({ type: "step", id: req.id, record, totalSteps }),
          onEval: (step, loss) => post({ type: "eval", id: req.id, step, loss }),
          onCheckpoint: (step, path) => post({ type: "checkpoint", id: req.id, step, path }),
          aborted: () => Atomics.load(flag, 0) !== 0,
        });
        last = state;
        port.postMessage({ type: "result", id: req.id, ok: true, state, aborted } satisfies WorkerMessage, transferOf(state));
      } catch (err) {
        port.postMessage({ type: "result", id: req.id, ok: false, error: (err as Error).message, code: err instanceof LoraportError ? err.code : undefined, state: last } satisfies WorkerMessage);
      }
      return;
    }
    case "evaluate": {
      if (!runner || !manifest) throw new Error("worker not initialised");
      const loss = await evaluateLoss(runner, req.params, req.data, req.batchSize, manifest.task);
      post({ type: "result", id: req.id, ok: true, loss });
      return;
    }
    case "forward": {
      if (!runner || !manifest) throw new Error("worker not initialised");
      const logits = await runner.forward(req.params, makeBatch(req.data, manifest.task));
      port.postMessage({ type: "result", id: req.id, ok: true, logits } satisfies WorkerMessage, [logits.data.buffer as ArrayBuffer]);
      return;
    }
    case "close": {
      await runner?.release();
      runner = undefined;
      post({ type: "result", id: req.id, ok: true });
      port.close();
      return;
    }
  }
}

port.on("message", (req: WorkerRequest) => {
  handle(req).catch((err: unknown) =>
    post({ type: "result", id: req.id, ok: false, error: err instanceof Error ? err.message : String(err), code: err instanceof LoraportError ? err.code : undefined }),
  );
});
