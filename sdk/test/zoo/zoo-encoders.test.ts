/**
 * The zoo's encoders (sequence classification, as the zoo builds them) through the ONNX exporter: bert, distilbert,
 * deberta-v2 and electra in both modes, roberta merged (its adapter-inputs export is proven in
 * sdk/test/runtime/lora-model.test.ts). Each adapter is PEFT's SEQ_CLS kind: LoRA on the default targets plus the
 * classifier saved whole, which an adapter-inputs export takes through its head inputs. Every export runs in
 * onnxruntime-node (LoraModel) with PyTorch + PEFT's logits within 1e-4: with the adapter and with none (the base),
 * with an all-ones and a padded attention mask. One Python process builds the models, adapters, references and exports.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { LoraModel } from "../../src/runtime/lora-model.js";
import { runPython, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/make_zoo_encoders.py"), "utf8");
// lora-model.test.ts's ONNX Runtime vs PyTorch tolerance.
const TOL = 1e-4;
type Mode = "adapter-inputs" | "merged";
/** What is exported per architecture (roberta's adapter-inputs export is lora-model.test.ts's). */
const MODES: Readonly<Record<string, readonly Mode[]>> = {
  bert: ["adapter-inputs", "merged"],
  roberta: ["merged"],
  distilbert: ["adapter-inputs", "merged"],
  "deberta-v2": ["adapter-inputs", "merged"],
  electra: ["adapter-inputs", "merged"],
};
const CASES = Object.entries(MODES).flatMap(([arch, modes]) => modes.map((mode) => [arch, mode] as const));

interface Export {
  dir?: string;
  seconds: number;
  type?: string;
  message?: string;
}

interface Made {
  model_class: string;
  task_type: string;
  modules_to_save: string[];
  adapter: string;
  logits: number[];
  padded_logits: number[];
  base_logits: number[];
  base_padded_logits: number[];
  exports: Partial<Record<Mode, Export>>;
  /** An adapter-inputs export without --targets, for architectures PEFT has no default targets for. */
  no_targets?: { exported?: boolean; type?: string; message?: string; written?: boolean };
}

/** Largest |got − want| and where: [row, label] of a [batch, labels] logits tensor. */
function maxErr(got: Float32Array, want: readonly number[], labels: number): { abs: number; at: string } {
  expect(got.length).toBe(want.length);
  let abs = 0, i0 = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (d > abs) { abs = d; i0 = i; }
  }
  return { abs, at: `[${Math.floor(i0 / labels)}, ${i0 % labels}]` };
}

describe("model zoo encoders through the ONNX exporter", () => {
  const tmp = tempDir("loraport-zoo-encoders-");
  let made: Record<string, Made> = {};
  let ids: number[][] = [];
  let padded: number[][] = [];
  beforeAll(() => {
    const script = SCRIPT.replace('sys.path.insert(0, "sidecar")', `sys.path.insert(0, ${JSON.stringify(join(import.meta.dirname, "../../../sidecar"))})`);
    const spec = Object.entries(MODES).map(([a, m]) => `${a}=${m.join("+")}`).join(",");
    // Nine exports in one process: longer than runPython's default limit on a loaded machine.
    const out = runPython(script, [tmp.dir, spec], { timeoutMs: 900_000 }).trim().split("\n");
    const all = JSON.parse(out[out.length - 1]!) as Record<string, unknown>;
    ids = all["_ids"] as number[][];
    padded = all["_padded_mask"] as number[][];
    made = Object.fromEntries(Object.keys(MODES).map((a) => [a, all[a] as Made]));
    for (const [a, m] of Object.entries(made)) {
      console.log(`zoo ${a} (${m.model_class}): export seconds ${Object.entries(m.exports).map(([k, e]) => `${k} ${e.seconds}`).join(", ")}`);
    }
  }, limit(960_000));
  afterAll(() => tmp.cleanup());

  it.each(Object.keys(MODES))("%s: the zoo builds sequence classification and PEFT's SEQ_CLS adapter saves the classifier whole", (arch) => {
    const m = made[arch]!;
    expect(m.model_class).toMatch(/ForSequenceClassification$/);
    expect(m.task_type).toBe("SEQ_CLS");
    expect(m.modules_to_save).toContain("classifier");
  });

  it("distilbert (no PEFT default targets): an adapter-inputs export without --targets is refused in one line naming the model type", () => {
    const r = made["distilbert"]!.no_targets!;
    expect(r.exported).toBeUndefined();
    expect(r.type).toBe("ExportError");
    expect(r.message).toMatch(/^--targets: PEFT has no default target modules for model type 'distilbert'; name the modules to adapt$/);
    expect(r.written).toBe(false);
  });

  it.each(CASES)("%s %s: exports and runs in onnxruntime-node with PyTorch + PEFT's logits (adapter and base, all-ones and padded masks)", async (arch, mode) => {
    const m = made[arch]!;
    const ex = m.exports[mode]!;
    expect(ex.type === undefined ? "" : `${ex.type}: ${ex.message}`, `${arch} ${mode} export`).toBe("");
    const labels = m.logits.length / ids.length;
    // The adapter (LoRA and its own classifier) and the padding each move the logits far beyond the tolerance, so the
    // checks below can fail.
    expect(maxErr(Float32Array.from(m.logits), m.base_logits, labels).abs).toBeGreaterThan(100 * TOL);
    expect(maxErr(Float32Array.from(m.padded_logits), m.logits, labels).abs).toBeGreaterThan(TOL);
    const model = await LoraModel.load(ex.dir!);
    try {
      const runs: Array<[string, string | null, number[][] | undefined, number[]]> = mode === "merged"
        ? [["adapter", null, undefined, m.logits], ["adapter, padded", null, padded, m.padded_logits]]
        : [["adapter", "a", undefined, m.logits], ["adapter, padded", "a", padded, m.padded_logits],
          ["base", null, undefined, m.base_logits], ["base, padded", null, padded, m.base_padded_logits]];
      if (mode === "adapter-inputs") await model.registerAdapter("a", (await readPeftAdapter(m.adapter)).adapter);
      for (const [what, adapter, mask, want] of runs) {
        const res = await model.run({ inputIds: ids, ...(mask ? { attentionMask: mask } : {}) }, adapter === null ? {} : { adapter });
        expect(res.logits.shape).toEqual([ids.length, labels]);
        const e = maxErr(res.logits.data as Float32Array, want, labels);
        console.log(`zoo ${arch} ${mode} (${what}) vs PyTorch + PEFT: max abs ${e.abs.toExponential(2)} at ${e.at}`);
        expect(e.abs, `${arch} ${mode} ${what}`).toBeLessThanOrEqual(TOL);
      }
    } finally {
      await model.close();
    }
  }, limit(120_000));
});
