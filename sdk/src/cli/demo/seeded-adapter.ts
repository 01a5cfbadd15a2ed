/** Seeded PEFT adapters for the demo's builtin tiny GPT-2 (2 layers, 64 wide, fused c_attn): no files needed. */
import type { LoraAdapter, LoraModule } from "../../adapter/adapter.js";
import { loraConfig } from "../../adapter/config.js";
import { tensor, type Tensor } from "../../tensor/index.js";

/** A c_attn adapter of rank `r` (alpha 2r) with factors uniform in ±spread/2 from a small LCG seeded by `seed`. */
export function seededTinyGpt2Adapter(seed: number, r: number, spread: number): LoraAdapter {
  let s = seed;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * spread;
  const fill = (shape: number[]): Tensor => tensor("F32", shape, Float32Array.from({ length: shape[0]! * shape[1]! }, rnd));
  const modules = new Map<string, LoraModule>();
  for (let l = 0; l < 2; l++) modules.set(`transformer.h.${l}.attn.c_attn`, { kind: "conv1d", A: fill([r, 64]), B: fill([192, r]) });
  return { config: loraConfig({ r, lora_alpha: 2 * r, target_modules: ["c_attn"], fan_in_fan_out: true }), modules, extraTensors: new Map() };
}
