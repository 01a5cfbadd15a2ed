/**
 * Checkpoint keys transformers renames on load (conversion_mapping.py): loraport's renaming tables against transformers'
 * own rename_source_key on saved tiny models (both directions, every key), merges of PEFT adapters whose modules carry the
 * loaded names (DeiT attention, GPT-NeoX lm_head saved as embed_out) against PEFT merge_and_unload's saved folder, and the
 * refusal for a module found under neither name, which names both. ViT itself is merged in the zoo test.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkpointKeyMap, RENAMED_MODEL_TYPES } from "../../src/adapter/checkpoint-keys.js";
import { mergeModel } from "../../src/adapter/merge-model.js";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { ShapeMismatchError } from "../../src/errors.js";
import { openSafetensorsModel } from "../../src/formats/safetensors/index.js";
import { toFloat32 } from "../../src/tensor/index.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/checkpoint_keys.py"), "utf8");

interface Made {
  keys: Record<string, { model_type: string; pairs: Array<{ saved: string; loaded: string; fused: boolean; in_model: boolean }> }>;
  merged: Record<string, string[]>;
  renamed_zoo: string[];
}

describe("checkpoint keys renamed by transformers' conversion mapping", () => {
  const tmp = tempDir("loraport-ckeys-");
  let made: Made;
  beforeAll(() => {
    made = runPythonJson<Made>(SCRIPT.replace('sys.path.insert(0, "sidecar")', `sys.path.insert(0, ${JSON.stringify(join(import.meta.dirname, "../../../sidecar"))})`), [tmp.dir]);
  }, limit(180_000));
  afterAll(() => tmp.cleanup());

  const keysOf = (arch: string) => checkpointKeyMap(made.keys[arch]!.model_type)!;

  it("every zoo architecture transformers renames has a table (gpt_neox, mixtral, vit)", () => {
    expect(made.renamed_zoo).toEqual(["gpt_neox", "mixtral", "vit"]);
    for (const arch of made.renamed_zoo) expect(RENAMED_MODEL_TYPES).toContain(arch);
  });

  it.each(["vit", "deit", "gpt_neox", "mixtral"])("%s: every saved key maps to transformers' loaded name and back", (arch) => {
    const { model_type, pairs } = made.keys[arch]!;
    const keys = checkpointKeyMap(model_type)!;
    expect(keys, model_type).toBeDefined();
    const renamed = pairs.filter((p) => p.saved !== p.loaded && !p.fused);
    expect(renamed.length).toBeGreaterThan(0);
    for (const p of pairs) {
      expect(p.in_model, p.loaded).toBe(true);
      // Fused keys (Mixtral's per-expert w1/w2/w3 → one parameter) are no module PEFT can wrap; not renamed one to one.
      if (p.fused) continue;
      expect(keys.loadedName(p.saved), p.saved).toBe(p.loaded);
      expect(keys.savedName(p.loaded), p.loaded).toBe(p.saved);
    }
  });

  it.each(["deit", "gpt_neox"])("%s: merge of an adapter on the loaded names equals PEFT merge_and_unload's saved folder", async (arch) => {
    const dir = join(tmp.dir, arch);
    const { adapter } = await readPeftAdapter(join(dir, "adapter"));
    expect([...adapter.modules.keys()].sort()).toEqual(made.merged[arch]);
    const report = await mergeModel(join(dir, "base"), adapter, join(dir, "merged"), { safe: true });
    // PEFT saves the targeted output head whole beside its LoRA (save_embedding_layers): it replaces the base's, ΔW on top.
    const touched = [...report.merged.map((m) => m.tensor), ...report.replaced].sort();
    expect(touched).toEqual(arch === "gpt_neox" ? ["embed_out.weight"] : made.merged[arch]!.map((m) => `${keysOf(arch).savedName(m)}.weight`).sort());
    const ours = await openSafetensorsModel(join(dir, "merged"));
    const ref = await openSafetensorsModel(join(dir, "peft_merged"));
    try {
      expect([...ours.names].sort()).toEqual([...ref.names].sort());
      let worst = 0;
      for (const n of ref.names) {
        const a = toFloat32(await ours.read(n));
        const b = toFloat32(await ref.read(n));
        for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      }
      console.log(`${arch}: ${touched.length} checkpoint tensors changed (${touched[0]}, ...); max abs vs PEFT ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-6);
    } finally {
      await ours.close();
      await ref.close();
    }
  });

  it("a module found under neither name is refused naming the adapter's module and the checkpoint key", async () => {
    const dir = join(tmp.dir, "vit_short");
    const { adapter } = await readPeftAdapter(join(dir, "adapter"));
    const err = await mergeModel(join(dir, "base"), adapter, join(dir, "merged")).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ShapeMismatchError);
    expect((err as ShapeMismatchError).module).toBe("vit.layers.1.attention.q_proj");
    expect((err as Error).message).toContain("'vit.layers.1.attention.q_proj.weight'");
    expect((err as Error).message).toContain("'vit.encoder.layer.1.attention.attention.query.weight' (its checkpoint key under transformers' vit conversion mapping)");
    expect(existsSync(join(dir, "merged"))).toBe(false);
  });
});
