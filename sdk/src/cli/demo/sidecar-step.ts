/** Demo: a round trip through the PyTorch sidecar — start, ping, tiny GPT-2, a LoRA adapter sent from TS, forward. */
import { Sidecar } from "../../bridge/index.js";
import { tensor } from "../../tensor/index.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { DemoStep } from "./step.js";

/** Deterministic small values (a tiny LCG), so the demo prints the same numbers every run. */
function seeded(n: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

function summary(t: Tensor): string {
  const x = t.data as Float32Array;
  let sum = 0, sq = 0;
  for (const v of x) {
    sum += v;
    sq += v * v;
  }
  const mean = sum / x.length;
  return `shape [${t.shape.join(", ")}], mean ${mean.toFixed(4)}, std ${Math.sqrt(sq / x.length - mean * mean).toFixed(4)}`;
}

export const sidecarStep: DemoStep = {
  title: "PyTorch sidecar: start, ping, tiny GPT-2 + a LoRA adapter sent from TypeScript, forward",
  async run(ctx) {
    const t0 = performance.now();
    await using sc = await Sidecar.start();
    const caps = sc.capabilities;
    ctx.log(`sidecar pid ${caps.pid} up in ${((performance.now() - t0) / 1000).toFixed(2)} s: Python ${caps.python}, torch ${caps.torch}, peft ${caps.peft ?? "-"}, devices ${caps.devices.join(", ")}`);
    const pings: number[] = [];
    for (let i = 0; i < 50; i++) pings.push(await sc.ping());
    pings.sort((x, y) => x - y);
    ctx.log(`ping round trip: first ${pings.at(-1)!.toFixed(2)} ms, median of 50 ${(pings[25]! * 1000).toFixed(0)} µs (endpoint ${sc.endpoint})`);

    await using model = await sc.loadModel({ source: { kind: "builtin", family: "gpt2" } });
    ctx.log(`loaded ${model.architecture} (${model.numParameters.toLocaleString("en-US")} parameters, seeded tiny config) as handle ${model.handle}`);
    const ids = tensor("I64", [1, 8], BigInt64Array.from([5, 17, 42, 9, 100, 3, 77, 64], BigInt));
    const base = (await model.forward({ input_ids: ids }))["logits"]!;

    // A PEFT LoRA adapter (r=4 on the fused c_attn of both layers) made here and sent as raw tensor frames.
    const r = 4, d = 64;
    const tensors: Record<string, Tensor> = {};
    for (let layer = 0; layer < 2; layer++) {
      const key = `base_model.model.transformer.h.${layer}.attn.c_attn`;
      tensors[`${key}.lora_A.weight`] = tensor("F32", [r, d], seeded(r * d, 11 + layer, 0.1));
      tensors[`${key}.lora_B.weight`] = tensor("F32", [3 * d, r], seeded(3 * d * r, 101 + layer, 0.1));
    }
    const config = { peft_type: "LORA", r, lora_alpha: 8, target_modules: ["c_attn"], fan_in_fan_out: true, lora_dropout: 0 };
    const att = await model.attachAdapter({ kind: "tensors", config }, { tensors, adapterName: "demo" });
    ctx.log(`attached adapter '${att.adapterName}': ${att.loraModules} LoRA modules, ${att.loraParameters} parameters`);

    const logits = (await model.forward({ input_ids: ids }))["logits"]!;
    const a = logits.data as Float32Array, b = base.data as Float32Array;
    let maxDelta = 0;
    for (let i = 0; i < a.length; i++) maxDelta = Math.max(maxDelta, Math.abs(a[i]! - b[i]!));
    const last = a.subarray(a.length - 128);
    const next = last.indexOf(Math.max(...last));
    ctx.log(`logits ${summary(logits)}; max |Δ| vs the base model ${maxDelta.toExponential(3)}; next-token argmax ${next}`);
  },
};
