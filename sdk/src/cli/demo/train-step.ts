/**
 * Demo step: training. The sidecar exports a train-step artifact for the tiny GPT-2 (graphs checked against
 * PyTorch autograd and torch.optim.AdamW at export), then the Trainer fine-tunes LoRA for a few steps in
 * onnxruntime-node on a worker thread and the losses are printed.
 */
import { join } from "node:path";
import { Sidecar } from "../../bridge/sidecar.js";
import type { TrainExample } from "../../training/data.js";
import { Trainer } from "../../training/trainer.js";
import type { DemoContext, DemoStep } from "./step.js";

/** A short repeating pattern the adapter can learn within a few steps (ids under the tiny vocabulary of 128). */
function demoData(): TrainExample[] {
  return Array.from({ length: 16 }, (_, i) => ({ input_ids: Array.from({ length: 24 }, (_, j) => 10 + ((i + j * 3) % 12)) }));
}

export const trainStep: DemoStep = {
  title: "Training: export a train-step artifact, fine-tune LoRA from TypeScript in ONNX Runtime",
  async run(ctx: DemoContext): Promise<void> {
    const shared = ctx.shared.get("demo.sidecar") as Sidecar | undefined;
    const sc = shared ?? (await Sidecar.start());
    const dir = join(ctx.workDir, "train-artifact");
    try {
      ctx.log("exporting train_step.onnx and friends for the tiny GPT-2 (LoRA r 4 on c_attn; about a minute) …");
      const res = await sc.exportTrainStep({ builtin: "gpt2" }, dir, { targetModules: ["c_attn"], r: 4, alpha: 8 });
      ctx.log(`export checks passed: step-1 gradients vs PyTorch max rel ${res.gradMaxRelErr.toExponential(1)}, first AdamW update max abs ${res.updateMaxAbsErr.toExponential(1)}`);
    } finally {
      if (!shared) await sc.close();
    }
    const trainer = await Trainer.load(dir, { executionProviders: ["cpu"] });
    try {
      const losses: number[] = [];
      await trainer.fit(demoData(), { maxSteps: 12, batchSize: 4, lr: 2e-2, lrSchedule: { kind: "linear", warmupSteps: 2 }, onProgress: (e) => losses.push(e.loss) });
      ctx.log(`losses: ${losses.map((l) => l.toFixed(3)).join(" ")}`);
      ctx.log(`loss ${losses[0]!.toFixed(3)} → ${losses.at(-1)!.toFixed(3)} in ${losses.length} steps on ${trainer.provider}`);
      const adapterDir = join(ctx.workDir, "trained-adapter");
      await trainer.saveAdapter(adapterDir);
      ctx.log(`trained adapter written as a PEFT folder: ${adapterDir}`);
    } finally {
      await trainer.close();
    }
  },
};
