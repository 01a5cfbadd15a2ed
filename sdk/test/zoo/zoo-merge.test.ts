/**
 * The model zoo: for each of 25 transformers architectures (tiny seeded configs, sidecar/loraport_sidecar/reference/zoo.py)
 * a PEFT adapter on PEFT's default targets, built, saved and merged by PEFT in one Python process; loraport's
 * inspect must list PEFT's LoRA modules and parameter count, and mergeModel into the base folder must give PEFT
 * merge_and_unload's saved weights (every tensor, same names) within the merge tests' 1e-6.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mergeModel } from "../../src/adapter/merge-model.js";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { inspectAdapter } from "../../src/cli/commands/inspect-adapter.js";
import { LoraportError } from "../../src/errors.js";
import { openSafetensorsModel } from "../../src/formats/safetensors/index.js";
import { toFloat32 } from "../../src/tensor/index.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/make_zoo.py"), "utf8");
// The weight tolerance of merge-model.test.ts (float32 weights of magnitude ~0.02–1).
const TOL = 1e-6;
/**
 * Merges loraport refuses today, with the refusal it must give (a typed error naming the adapted module); none now. ViT, which
 * transformers 5 saves under its old names (vit.encoder.layer.N.attention.attention.query) while PEFT's adapter names the
 * loaded modules (vit.layers.N.attention.q_proj), merges through its checkpoint renaming (src/adapter/checkpoint-keys.ts) and
 * is written back under the checkpoint's names, as PEFT merge_and_unload().save_pretrained() writes it.
 */
const KNOWN_MERGE_REFUSALS: Readonly<Record<string, RegExp>> = {};
/** Every architecture of the zoo; the test fails if the fixture skips one. */
const ARCHS = ["gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "phi3", "gpt_neox", "opt", "bloom", "falcon", "gptj",
  "olmo2", "starcoder2", "mixtral", "bert", "roberta", "distilbert", "deberta-v2", "electra", "t5", "bart", "vit"] as const;

interface Made {
  readonly kind: string;
  readonly targets: string[];
  readonly modules: string[];
  readonly lora_params: number;
  readonly adapter_moves_logits: number;
  readonly error?: string;
}

describe("model zoo: inspect and merge equal PEFT across 25 architectures", () => {
  const tmp = tempDir("loraport-zoo-");
  let made: Record<string, Made> = {};
  beforeAll(() => {
    made = runPythonJson<Record<string, Made>>(SCRIPT.replace('sys.path.insert(0, "sidecar")', `sys.path.insert(0, ${JSON.stringify(join(import.meta.dirname, "../../../sidecar"))})`), [tmp.dir]);
  }, limit(240_000));
  afterAll(() => tmp.cleanup());

  it("PEFT built every architecture, and each adapter moves the logits", () => {
    expect(Object.keys(made).sort()).toEqual([...ARCHS].sort());
    for (const arch of ARCHS) {
      expect(made[arch]!.error, arch).toBeUndefined();
      expect(made[arch]!.modules.length, arch).toBeGreaterThan(0);
      expect(made[arch]!.adapter_moves_logits, arch).toBeGreaterThan(1e-5);
    }
  });

  it.each(ARCHS)("%s: inspect lists PEFT's modules; merge equals PEFT merge_and_unload", async (arch) => {
    const m = made[arch]!;
    const dir = join(tmp.dir, arch);
    const seen = await inspectAdapter(join(dir, "adapter"));
    expect(seen?.format, arch).toBe("peft");
    const json = seen!.json as { targetModules: string[]; modules: Array<{ name: string; r: number; scaling: number }>; loraParams: number };
    expect(json.targetModules).toEqual(m.targets);
    expect(json.modules.map((x) => x.name).sort()).toEqual(m.modules);
    expect(json.loraParams).toBe(m.lora_params);
    for (const x of json.modules) expect([x.r, x.scaling], x.name).toEqual([4, 2]);

    const { adapter } = await readPeftAdapter(join(dir, "adapter"));
    const refusal = KNOWN_MERGE_REFUSALS[arch];
    if (refusal) {
      const err = await mergeModel(join(dir, "base"), adapter, join(dir, "merged")).then(() => undefined, (e: unknown) => e);
      expect(err, `${arch} now merges: remove it from KNOWN_MERGE_REFUSALS and mark merge in the README's zoo table`).toBeInstanceOf(LoraportError);
      expect((err as Error).message).toMatch(refusal);
      expect(existsSync(join(dir, "merged"))).toBe(false);
      return;
    }
    const report = await mergeModel(join(dir, "base"), adapter, join(dir, "merged"), { safe: true });
    expect(report.merged.length).toBe(m.modules.length);
    expect(report.unused).toEqual([]);
    const ours = await openSafetensorsModel(join(dir, "merged"));
    const ref = await openSafetensorsModel(join(dir, "peft_merged"));
    try {
      expect([...ours.names].sort()).toEqual([...ref.names].sort());
      let worst = 0;
      for (const n of ref.names) {
        const a = toFloat32(await ours.read(n));
        const b = toFloat32(await ref.read(n));
        expect(a.length, n).toBe(b.length);
        for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      }
      console.log(`zoo ${arch}: ${report.merged.length} modules merged, max abs vs PEFT ${worst.toExponential(2)} over ${ref.names.length} tensors`);
      expect(worst).toBeLessThanOrEqual(TOL);
    } finally {
      await ours.close();
      await ref.close();
    }
  });
});
