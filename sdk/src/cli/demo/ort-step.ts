/**
 * Demo step: ONNX Runtime. Export the demo's tiny base with LoRA inputs, run it with and without the demo
 * adapter in onnxruntime-node (worker thread), and compare the logits with PyTorch + PEFT in the sidecar.
 * Uses the adapters step's PEFT adapter (`adapter.peftDir`) when it fits the tiny GPT-2 (the built-in tiny loralib
 * adapter does; the published GPT-2 Medium one does not), else a seeded adapter of its own.
 */
import { join } from "node:path";
import type { LoraAdapter, LoraModule } from "../../adapter/adapter.js";
import { loraConfig } from "../../adapter/config.js";
import { readPeftAdapter, writePeftAdapter } from "../../adapter/peft-io.js";
import { Sidecar } from "../../bridge/sidecar.js";
import { ShapeMismatchError } from "../../errors.js";
import { tensor, type Tensor } from "../../tensor/index.js";
import { LoraModel } from "../../runtime/lora-model.js";
import type { DemoContext, DemoStep } from "./step.js";

const IDS = [1, 5, 9, 17, 33, 2, 64, 100];

/** A seeded GPT-2 c_attn adapter (r 4, alpha 8) for the builtin tiny GPT-2 (2 layers, 64 wide). */
function demoAdapter(): LoraAdapter {
  let s = 12345;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.2;
  const fill = (shape: number[]): Tensor => tensor("F32", shape, Float32Array.from({ length: shape[0]! * shape[1]! }, rnd));
  const modules = new Map<string, LoraModule>();
  for (let l = 0; l < 2; l++) modules.set(`transformer.h.${l}.attn.c_attn`, { kind: "conv1d", A: fill([4, 64]), B: fill([192, 4]) });
  return { config: loraConfig({ r: 4, lora_alpha: 8, target_modules: ["c_attn"], fan_in_fan_out: true }), modules, extraTensors: new Map() };
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export const ortStep: DemoStep = {
  title: "ONNX Runtime: one exported base, adapters swapped per request, vs PyTorch + PEFT",
  async run(ctx: DemoContext): Promise<void> {
    const sc = await Sidecar.start();
    try {
      const base = await sc.loadModel({ source: { kind: "builtin", family: "gpt2" } });
      const out = join(ctx.workDir, "ort-gpt2");
      const ex = await sc.exportOnnx(base, out, { mode: "adapter-inputs", targets: ["c_attn"] });
      ctx.log(`exported the tiny GPT-2 with LoRA inputs on ${ex.loraModules} modules (${ex.seconds.toFixed(1)} s) → ${out}`);

      await using model = await LoraModel.load(out);
      if (model.providerNote) ctx.log(model.providerNote);
      let adapterDir = ctx.shared.get("adapter.peftDir") as string | undefined;
      try {
        if (!adapterDir) throw new ShapeMismatchError("adapter", "no adapter from the adapters step");
        await model.registerAdapter("demo", (await readPeftAdapter(adapterDir)).adapter);
        ctx.log(`adapter: the adapters step's PEFT adapter (${adapterDir})`);
      } catch (err) {
        if (!(err instanceof ShapeMismatchError)) throw err;
        adapterDir = join(ctx.workDir, "ort-demo-adapter");
        await writePeftAdapter(adapterDir, demoAdapter());
        await model.registerAdapter("demo", (await readPeftAdapter(adapterDir)).adapter);
        ctx.log(`adapter: a seeded r=4 c_attn adapter for the tiny GPT-2 (the adapters step's one does not fit it: ${err.message.slice(0, 80)}…)`);
      }
      const ortBase = (await model.run({ inputIds: IDS })).logits.data as Float32Array;
      const ortLora = await model.run({ inputIds: IDS }, { adapter: "demo" });

      const ids = tensor("I64", [1, IDS.length], BigInt64Array.from(IDS.map(BigInt)));
      const ptBase = (await base.forward({ input_ids: ids }))["logits"]!.data as Float32Array;
      await base.attachAdapter({ kind: "peft", path: adapterDir });
      const ptLora = (await base.forward({ input_ids: ids }))["logits"]!.data as Float32Array;
      await base.release();

      ctx.log(`provider: ${ortLora.provider}; forward of ${IDS.length} tokens in ${ortLora.ms.toFixed(2)} ms`);
      ctx.log(`base    : ORT vs PyTorch max |Δlogit| = ${maxAbs(ortBase, ptBase).toExponential(2)}`);
      ctx.log(`adapter : ORT vs PyTorch+PEFT max |Δlogit| = ${maxAbs(ortLora.logits.data as Float32Array, ptLora).toExponential(2)} (the adapter moves logits by up to ${maxAbs(ptLora, ptBase).toFixed(3)})`);
    } finally {
      await sc.close();
    }
  },
};
