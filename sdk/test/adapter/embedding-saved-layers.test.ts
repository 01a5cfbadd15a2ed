/**
 * Adapters whose PEFT save holds base-layer tensors beside the factors merge as PEFT's load + merge_and_unload:
 * LoRA (and DoRA) on the embedding with the whole embedding saved (save_embedding_layers), and
 * trainable_token_indices (list, dict, tied embeddings). The saved tensors differ from the base's (a control
 * that the test can fail), and every merged tensor equals PEFT's merged model to 1e-6 relative to the largest weight.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { mergeModel } from "../../src/adapter/merge-model.js";
import { foldSavedLayers, hasSavedLayers } from "../../src/adapter/saved-layers.js";
import type { LoraAdapter } from "../../src/adapter/adapter.js";
import { openSafetensorsModel, readSafetensors } from "../../src/formats/safetensors/index.js";
import { AdapterError, ShapeMismatchError } from "../../src/errors.js";
import { loraConfig } from "../../src/adapter/config.js";
import { toFloat32 } from "../../src/tensor/index.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/embedding_saved_layers.py"), "utf8");
const CASES = ["lora_embedding_saved", "dora_embedding_saved", "tokens_list", "tokens_list_tied", "tokens_dict"];

describe("embedding adapters saved by PEFT (save_embedding_layers, trainable tokens) merge as PEFT merges them", () => {
  const tmp = tempDir("loraport-embsaved-");
  let info: { cases: Record<string, { changed: number }> };
  beforeAll(() => {
    info = runPythonJson(SCRIPT, [tmp.dir]);
  }, limit(240_000));
  afterAll(() => tmp.cleanup());

  it("the fixture's saved tensors change the embedding (control)", () => {
    expect(Object.keys(info.cases)).toEqual(CASES);
    for (const c of CASES) expect(info.cases[c]!.changed, c).toBeGreaterThan(0.1);
  });

  for (const c of CASES) {
    it(`${c}: mergeModel equals PEFT's merge_and_unload for every tensor (1e-6 relative)`, async () => {
      const { adapter } = await readPeftAdapter(join(tmp.dir, c, "adapter"));
      expect(hasSavedLayers(adapter)).toBe(true);
      const out = join(tmp.dir, c, "ours");
      const report = await mergeModel(join(tmp.dir, c, "base"), adapter, out);
      expect(report.unused).toEqual([]);
      expect(report.replaced).toContain("model.embed_tokens.weight");
      const ours = (await readSafetensors(join(out, "model.safetensors"))).tensors;
      const peft = (await readSafetensors(join(tmp.dir, c, "merged.safetensors"))).tensors;
      let worst = 0;
      let scale = 1;
      for (const [name, t] of ours) {
        const ref = peft.get(name);
        expect(ref, name).toBeDefined();
        const a = toFloat32(t);
        const b = toFloat32(ref!);
        expect(a.length).toBe(b.length);
        for (let i = 0; i < a.length; i++) {
          worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
          scale = Math.max(scale, Math.abs(b[i]!));
        }
      }
      // Relative to the largest weight (the perturbed embeddings reach ~20, where one F32 ulp is 1.9e-6).
      expect(worst / scale, c).toBeLessThanOrEqual(1e-6);
    });
  }

  it("unmerge of such an adapter is refused (the base's own embedding is gone from merged weights)", async () => {
    const { adapter } = await readPeftAdapter(join(tmp.dir, "tokens_list", "adapter"));
    await expect(mergeModel(join(tmp.dir, "tokens_list", "base"), adapter, join(tmp.dir, "unmerged"), { unmerge: true })).rejects.toThrow(/saved whole/);
  });

  it("bad trainable tokens: typed errors naming the key", async () => {
    const { adapter } = await readPeftAdapter(join(tmp.dir, "tokens_list", "adapter"));
    const src = await openSafetensorsModel(join(tmp.dir, "tokens_list", "base"));
    try {
      const withIndices = (indices: unknown): LoraAdapter => ({ ...adapter, config: loraConfig({ ...adapter.config, trainable_token_indices: indices as never }) });
      await expect(foldSavedLayers(withIndices([1, 5, 64]), src)).rejects.toThrow(AdapterError);
      await expect(foldSavedLayers(withIndices([1, 5, 64]), src)).rejects.toThrow(/token id 64 is outside the base embedding 'model.embed_tokens.weight' \(64 rows\)/);
      await expect(foldSavedLayers(withIndices([1, 5]), src)).rejects.toThrow(ShapeMismatchError);
      await expect(foldSavedLayers(withIndices({ lm_head: [1, 2, 3] }), src)).rejects.toThrow(/names no entry for model.embed_tokens/);
      await expect(foldSavedLayers(withIndices(null), src)).rejects.toThrow(/no trainable_token_indices/);
    } finally {
      await src.close();
    }
  });
});
