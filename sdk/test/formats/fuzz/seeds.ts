/**
 * The fuzzer's seed files: safetensors written by loraport's writer (byte-identical to save_file) and torch
 * checkpoints written by real torch.save in the same run (views, shared storages, Parameters, nested dicts,
 * every common dtype), all small so that a case costs milliseconds.
 */
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeSafetensors } from "../../../src/formats/safetensors/writer.js";
import { runPython } from "../../helpers/python.js";
import { mixedStateDict, randomTensor } from "../fixtures.js";
import type { Seed } from "./mutate.js";

const TORCH_SEEDS = `
import sys, torch
from collections import OrderedDict
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
base = torch.randn(6, 8, generator=g)
torch.save({"w": base, "b": torch.randn(8, generator=g).half()}, f"{out}/plain.pt")
torch.save(OrderedDict(w=base, t=base.t(), row=base[2], col=base[:, 3], tied=base, ex=torch.ones(3).expand(4, 3)), f"{out}/views.pt")
m = torch.nn.Linear(4, 3)
torch.save(m.state_dict(), f"{out}/linear.pt")
torch.save({"model_state_dict": {"layer": {"w": torch.arange(12, dtype=torch.int64).reshape(3, 4)}}, "epoch": 3, "name": "x", "l": [1.5, None, True]}, f"{out}/nested.pt")
torch.save({"p": torch.nn.Parameter(torch.randn(2, 2, generator=g)), "bf": torch.randn(5, generator=g).bfloat16(), "bool": torch.tensor([True, False]), "i8": torch.tensor([-1, 2], dtype=torch.int8), "s": torch.tensor(2.5, dtype=torch.float64)}, f"{out}/dtypes.pt")
torch.save([torch.zeros(0), torch.ones(2, 0), torch.randn(3, generator=g)], f"{out}/list.pt")
`;

/** Write every seed into `dir` (torch ones by torch.save, in a Python child) and return them. */
export async function buildSeeds(dir: string): Promise<Seed[]> {
  mkdirSync(dir, { recursive: true });
  runPython(TORCH_SEEDS, [dir]);
  await writeSafetensors(join(dir, "mixed.safetensors"), mixedStateDict(), { format: "pt" });
  await writeSafetensors(join(dir, "small.safetensors"), new Map([["a", randomTensor("F32", [2, 3], 1)], ["b", randomTensor("I64", [2], 2)]]));
  await writeSafetensors(join(dir, "empty.safetensors"), new Map());
  const lora = new Map<string, ReturnType<typeof randomTensor>>();
  for (let i = 0; i < 6; i++) {
    lora.set(`base_model.model.layers.${i}.q_proj.lora_A.weight`, randomTensor("F32", [4, 16], 10 + i));
    lora.set(`base_model.model.layers.${i}.q_proj.lora_B.weight`, randomTensor("BF16", [16, 4], 20 + i));
  }
  await writeSafetensors(join(dir, "lora.safetensors"), lora, { format: "pt" });
  return loadSeeds(dir);
}

export function loadSeeds(dir: string): Seed[] {
  return readdirSync(dir)
    .sort()
    .filter((f) => f.endsWith(".pt") || f.endsWith(".safetensors"))
    .map((f) => ({ name: f, kind: f.endsWith(".pt") ? "torch" : "safetensors", bytes: new Uint8Array(readFileSync(join(dir, f))) }) as Seed);
}
