/**
 * Demo step "adapters": the published GPT-2 Medium E2E checkpoint (or, without it, a built-in tiny loralib
 * adapter) → an exact PEFT adapter → merged into a base of the right shapes with fixed weights.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describeAdapter } from "../../adapter/adapter.js";
import { resolveModule } from "../../adapter/config.js";
import { convertLoralibToPeft } from "../../adapter/convert.js";
import { loralibFromStateDict, readLoralibCheckpoint, type LoralibCheckpoint } from "../../adapter/loralib.js";
import { deltaWeight } from "../../adapter/math.js";
import { mergeModel } from "../../adapter/merge-model.js";
import { readPeftAdapter, writePeftAdapter } from "../../adapter/peft-io.js";
import { writeSafetensors } from "../../formats/safetensors/index.js";
import { referenceDir, REFERENCE_FILES } from "../../reference.js";
import type { Tensor } from "../../tensor/index.js";
import type { DemoStep } from "./step.js";

/** Deterministic uniform values with standard deviation σ (xorshift32), so the demo needs no files and no Python. */
function seeded(n: number, seed: number, sigma: number): Float32Array {
  let x = seed >>> 0 || 1;
  const half = sigma * Math.sqrt(3);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = ((x >>> 0) / 4294967296 * 2 - 1) * half;
  }
  return out;
}

const f32 = (shape: number[], data: Float32Array): Tensor => ({ dtype: "F32", shape, data });

/** A tiny GPT-2-style loralib checkpoint: MergedLinear c_attn (q and v enabled), r=4, 2 layers, width 64. */
function tinyLoralib(): LoralibCheckpoint {
  const state = new Map<string, Tensor>();
  for (let l = 0; l < 2; l++) {
    state.set(`module.transformer.h.${l}.attn.c_attn.lora_A`, f32([8, 64], seeded(8 * 64, 11 + l, 0.1)));
    state.set(`module.transformer.h.${l}.attn.c_attn.lora_B`, f32([128, 4], seeded(128 * 4, 21 + l, 0.1)));
  }
  return loralibFromStateDict("built-in tiny GPT-2 loralib adapter", state);
}

export const adapterStep: DemoStep = {
  title: "adapters: loralib checkpoint → exact PEFT adapter → merged base",
  async run(ctx) {
    const published = join(referenceDir(), REFERENCE_FILES.gpt2MediumE2E);
    const usePublished = existsSync(published);
    const ckpt = usePublished ? await readLoralibCheckpoint(published) : tinyLoralib();
    ctx.log(usePublished ? `input: ${published} (published with the LoRA paper)` : `input: built-in tiny adapter (${REFERENCE_FILES.gpt2MediumE2E} not found in ${referenceDir()})`);
    const { adapter, report } = usePublished
      ? convertLoralibToPeft(ckpt, { preset: "gpt2-medium-nlg" })
      : convertLoralibToPeft(ckpt, { r: 4, alpha: 32, enableLora: [true, false, true], fanInFanOut: true, baseModel: "gpt2" });
    for (const line of report.lines) ctx.log(line);
    const peftDir = join(ctx.workDir, "peft-adapter");
    await writePeftAdapter(peftDir, adapter);
    ctx.log(`wrote PEFT adapter: ${peftDir}`);

    // A base of the right shapes with fixed weights: every adapted c_attn (Conv1D [in, out]) and its bias.
    const base = new Map<string, Tensor>();
    let seed = 1000;
    for (const [name, m] of adapter.modules) {
      const nIn = m.A.shape[1]!;
      const nOut = m.B.shape[0]!;
      base.set(`${name}.weight`, f32([nIn, nOut], seeded(nIn * nOut, seed++, 0.02)));
      base.set(`${name}.bias`, f32([nOut], seeded(nOut, seed++, 0.02)));
    }
    const basePath = join(ctx.workDir, "base.safetensors");
    await writeSafetensors(basePath, base, { format: "pt" });
    const mergedPath = join(ctx.workDir, "merged.safetensors");
    const t0 = performance.now();
    const merged = await mergeModel(basePath, (await readPeftAdapter(peftDir)).adapter, mergedPath, { safe: true });
    ctx.log(`merged ${merged.merged.length} modules into ${merged.tensors} base tensors in ${((performance.now() - t0) / 1000).toFixed(2)} s → ${mergedPath}`);

    const d = describeAdapter(adapter);
    const shown = d.modules.slice(0, 3);
    for (const m of shown) ctx.log(`  ${m.name}: ${m.kind}, r=${m.r}, alpha=${m.alpha}, scaling=${m.scaling}, ${m.out}×${m.in}`);
    if (d.modules.length > shown.length) ctx.log(`  … ${d.modules.length - shown.length} more modules alike`);
    let maxDelta = 0;
    let where = "";
    for (const [name, m] of adapter.modules) {
      const dw = deltaWeight(m, resolveModule(adapter.config, name).scaling).data as Float32Array;
      for (let i = 0; i < dw.length; i++) {
        const v = Math.abs(dw[i]!);
        if (v > maxDelta) {
          maxDelta = v;
          where = name;
        }
      }
    }
    ctx.log(`max |ΔW| = ${maxDelta.toFixed(4)} (${where}); ${d.loraParams.toLocaleString("en-US")} LoRA parameters`);
    ctx.shared.set("adapter.peftDir", peftDir);
    ctx.shared.set("adapter.basePath", basePath);
    ctx.shared.set("adapter.mergedPath", mergedPath);
  },
};
