/**
 * How many draws PEFT's `add_weighted_adapter` takes from torch's default generator before DARE's masks: it
 * first builds the new adapter's layers, and their initialisation is random. Per module, with the new rank r:
 * - Linear / Conv1D / Conv2d: `nn.Linear`/`nn.Conv2d` construct A (kaiming_uniform_, one draw per value) and
 *   B (the same), then `init_lora_weights=True` re-draws A (kaiming_uniform_) and zeroes B;
 * - Embedding: `torch.randn` for A and B, then `True` zeroes A and re-draws B with `normal_`. For float32
 *   tensors of n ≥ 16 values torch's CPU normal_ takes n uniform draws, plus 16 when n is not a multiple of 16.
 * Checked against PEFT 0.21 / torch 2.13 in sdk/test/adapter/combine-methods.test.ts.
 */
import { AdapterError } from "../../errors.js";
import { numel } from "../../tensor/index.js";
import type { LoraAdapter } from "../adapter.js";
import { moduleDims } from "../adapter.js";

function normalDraws(n: number, module: string): number {
  // Below 16 values torch draws normals one by one in double precision and caches one of each pair.
  if (n < 16) throw new AdapterError(`${module}: PEFT initialises a ${n}-value embedding factor with torch's serial normal sampler, whose draws loraport does not model; give seedAt: "masks" with the generator state at the first mask`);
  return n + (n % 16 === 0 ? 0 : 16);
}

/** Draws consumed when PEFT injects the combined adapter (rank `rank`) into `names`. */
export function peftInitDraws(adapters: readonly LoraAdapter[], names: readonly string[], rank: number): number {
  const init = adapters[0]!.config.init_lora_weights;
  if (init !== true && init !== false) {
    throw new AdapterError(`init_lora_weights: the first adapter's is ${JSON.stringify(init)}; PEFT's draws before the masks are modelled for true and false only; give seedAt: "masks" with the generator state at the first mask`);
  }
  let draws = 0;
  for (const name of names) {
    const m = adapters.map((a) => a.modules.get(name)).find((x) => x !== undefined)!;
    const { in: nIn, out } = moduleDims(m);
    if (m.kind === "embedding") {
      draws += normalDraws(rank * nIn, name) + normalDraws(out * rank, name);
      if (init) draws += normalDraws(out * rank, name);
    } else {
      const aValues = rank * numel(m.A.shape.slice(1));
      draws += aValues + out * rank + (init ? aValues : 0);
    }
  }
  return draws;
}
