/**
 * `loraport convert --to peft` on both published checkpoints: PEFT loads the result with no warnings, and
 * merged weights through real PEFT equal loralib's merged weights through real loralib (same seeded base,
 * every adapted module). loraport's own merge math is checked against loralib on the same tensors.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { convertToPeft } from "../../src/cli/commands/convert-peft.js";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { resolveModule } from "../../src/adapter/config.js";
import { mergeWeight } from "../../src/adapter/math.js";
import { readSafetensors } from "../../src/formats/safetensors/index.js";
import { toFloat32 } from "../../src/tensor/index.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { requireReference } from "../helpers/reference.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/loralib_parity.py"), "utf8");

interface Parity {
  warnings: string[];
  modules: number;
  max_abs: number;
  max_rel: number;
  where: string;
  delta_max: number;
  head_max_abs: number;
  head_keys: number;
  checked: string[];
}

const CASES = [
  { file: "gpt2_md_lora_e2e.pt", family: "gpt2", r: 4, alpha: 32, preset: "gpt2-medium-nlg", peftR: 8, peftAlpha: 64, heads: 0 },
  { file: "roberta_base_lora_mnli.bin", family: "roberta", r: 8, alpha: 16, preset: "roberta-base-glue", peftR: 8, peftAlpha: 16, heads: 4 },
] as const;

describe("convert --to peft on the published checkpoints", () => {
  const tmp = tempDir("loraport-convert-");
  afterAll(() => tmp.cleanup());

  for (const c of CASES) {
    const path = requireReference(c.file);
    it.skipIf(!path)(`${c.file}: PEFT loads it without warnings; PEFT-merged == loralib-merged on all 24 adapted modules`, async () => {
      const out = join(tmp.dir, c.family);
      const lines: string[] = [];
      await convertToPeft(path!, { out }, (l) => lines.push(l));
      expect(lines.join("\n")).toContain(`preset: ${c.preset} (detected from keys)`);
      const { adapter } = await readPeftAdapter(out);
      expect(adapter.config.r).toBe(c.peftR);
      expect(adapter.config.lora_alpha).toBe(c.peftAlpha);
      expect(adapter.extraTensors.size).toBe(c.heads);
      expect(adapter.config.task_type).toBe(c.family === "gpt2" ? "CAUSAL_LM" : "SEQ_CLS");

      const ref = join(tmp.dir, `${c.family}-ref`);
      mkdirSync(ref, { recursive: true });
      const p = runPythonJson<Parity>(SCRIPT, [path!, out, c.family, String(c.r), String(c.alpha), ref]);
      console.log(`${c.file}: PEFT vs loralib merged weights over ${p.modules} modules: max abs ${p.max_abs.toExponential(2)}, max rel ${p.max_rel.toExponential(2)}${p.where ? ` at ${p.where}` : ""}; max |ΔW| ${p.delta_max.toFixed(4)}`);
      expect(p.warnings).toEqual([]);
      expect(p.modules).toBe(24);
      expect(p.delta_max).toBeGreaterThan(0.01); // the adapter really changes the weights
      expect(p.max_abs).toBeLessThanOrEqual(1e-6);
      expect(p.head_keys).toBe(c.heads);
      expect(p.head_max_abs).toBe(0);

      // loraport's merge of its own converted adapter vs loralib's merge, same base tensors.
      const base = (await readSafetensors(join(ref, "base.safetensors"))).tensors;
      const lm = (await readSafetensors(join(ref, "loralib_merged.safetensors"))).tensors;
      let worst = 0;
      for (const name of p.checked) {
        const m = adapter.modules.get(name)!;
        const ours = toFloat32(mergeWeight(base.get(`${name}.weight`)!, m, resolveModule(adapter.config, name).scaling, { module: name, safe: true }));
        const theirs = toFloat32(lm.get(`${name}.weight`)!);
        for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - theirs[i]!));
      }
      console.log(`${c.file}: loraport merge vs loralib merge: max abs ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-6);
    }, limit(180_000));
  }
});
