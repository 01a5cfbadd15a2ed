/**
 * Demo step 1, formats: write a built-in state dict as safetensors and read it back validated, then read a
 * torch checkpoint that the sidecar environment's Python writes in this run.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { defaultPython, packageRoot } from "../../bridge/internal/process.js";
import { RuntimeError } from "../../errors.js";
import { readSafetensors, writeSafetensors } from "../../formats/safetensors/index.js";
import { summariseWeights } from "../../formats/summary.js";
import { readTorchCheckpoint } from "../../formats/torch/index.js";
import type { Tensor } from "../../tensor/tensor.js";
import { bytesOf, tensor, toFloat32 } from "../../tensor/tensor-impl.js";
import { f32ToBF16 } from "../../tensor/half.js";
import type { DemoStep } from "./step.js";

/** A small LoRA-shaped state dict with a few dtypes; values are a fixed function of the index. */
function builtInStateDict(): Map<string, Tensor> {
  const ramp = (n: number, scale: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * scale);
  return new Map<string, Tensor>([
    ["base_model.model.h.0.attn.c_attn.lora_A.weight", tensor("F32", [4, 16], ramp(64, 0.1))],
    ["base_model.model.h.0.attn.c_attn.lora_B.weight", tensor("F32", [48, 4], ramp(192, 0.01))],
    ["base_model.model.h.0.ln.weight", tensor("BF16", [16], f32ToBF16(ramp(16, 1)))],
    ["base_model.model.position_ids", tensor("I64", [8], BigInt64Array.from({ length: 8 }, (_, i) => BigInt(i)))],
  ]);
}

const SAVE_TORCH = `
import sys, torch
from collections import OrderedDict
sd = OrderedDict()
sd["encoder.weight"] = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
sd["encoder.bias"] = torch.linspace(-1, 1, 4).half()
sd["decoder"] = {"weight": sd["encoder.weight"].t(), "scale": torch.tensor(2.5, dtype=torch.bfloat16)}
torch.save({"model_state_dict": sd, "epoch": 3}, sys.argv[1])
print(torch.__version__)
`;

export const formatsStep: DemoStep = {
  title: "formats: safetensors write/read, torch checkpoint read",
  async run(ctx) {
    const sd = builtInStateDict();
    const stPath = join(ctx.workDir, "builtin.safetensors");
    await writeSafetensors(stPath, sd, { format: "pt" });
    const back = await readSafetensors(stPath); // validates header, offsets and sizes
    for (const [name, t] of sd) {
      const r = back.tensors.get(name);
      if (!r || !Buffer.from(bytesOf(r)).equals(Buffer.from(bytesOf(t)))) throw new RuntimeError(`demo: ${name} did not read back identically`);
    }
    const summary = await summariseWeights(stPath);
    ctx.log(`wrote ${stPath}: ${summary.tensors.length} tensors, metadata ${JSON.stringify(back.metadata)}; read back bit-identical`);
    for (const t of summary.tensors) ctx.log(`  ${t.name}  ${t.dtype} [${t.shape.join(", ")}]  ${t.byteLength} B`);

    const ptPath = join(ctx.workDir, "from-python.pt");
    const python = defaultPython(packageRoot());
    let torchVersion: string;
    try {
      torchVersion = (await promisify(execFile)(python, ["-c", SAVE_TORCH, ptPath], { timeout: 120_000 })).stdout.trim();
    } catch (err) {
      throw new RuntimeError(`demo: ${python} could not torch.save a checkpoint: ${((err as { stderr?: string }).stderr ?? String(err)).trim().split("\n").pop()}`);
    }
    const ckpt = await readTorchCheckpoint(ptPath);
    ctx.log(`read ${ptPath} (written by torch ${torchVersion}): ${ckpt.tensors.size} tensors from the model_state_dict wrapper`);
    for (const [name, t] of ckpt.tensors) {
      const v = toFloat32(t);
      const shown = Array.from(v.subarray(0, 4), (x) => +x.toFixed(4)).join(", ");
      ctx.log(`  ${name}  ${t.dtype} [${t.shape.join(", ")}]  storage ${ckpt.storageOf.get(name)}  first values [${shown}${v.length > 4 ? ", …" : ""}]`);
    }
  },
};
