/**
 * Embedding adapters served unmerged by an adapter-inputs export whose targets include the embedding: PEFT's LoRA on
 * the embedding (saved with the whole base embedding, save_embedding_layers) and trainable tokens
 * (trainable_token_indices; with tied word embeddings PEFT changes the tied LM head's logits too), each against
 * PyTorch + PEFT computed in the same run (embedding_adapters_fixture.py): logits, a mixed batch (both adapters and
 * the base in one run), greedy generation (mixed batch, and through the serving engine). Untied Llama and tied GPT-2
 * (also LoRA on its tied lm_head), one export each; the zoo's tied Gemma, whose embedding scales its output by
 * sqrt(hidden) (embed_scale, which PEFT applies to the LoRA delta and the replaced rows too), exported by the CLI
 * (`loraport export --targets q_proj,v_proj,embed_tokens`). What cannot be served (a changed saved embedding, an export without the embedding inputs) is
 * refused with what to do.
 */
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { UnsupportedFeatureError } from "../../src/errors.js";
import { generateBatch } from "../../src/generation/generate.js";
import { LoraModel } from "../../src/runtime/lora-model.js";
import { MANIFEST_NAME, type OnnxManifest } from "../../src/runtime/manifest.js";
import { LocalEngine } from "../../src/serving/local-engine.js";
import { exportOnnxAdapter } from "../../src/runtime/onnx-adapter-export.js";
import { REPO_ROOT, runPython, runPythonJson, tempDir } from "../helpers/python.js";
import { cli } from "../cli/cli-fixtures.js";
import { limit } from "../helpers/timeouts.js";

const TOL = 1e-4;
const NEW = 8;
/** Token ids that include the trainable ones (llama 3, 17, 64; gpt2 5, 9, 100), so the replaced rows matter. */
const IDS = [
  [3, 17, 64, 5, 9, 100, 1, 3],
  [12, 0, 99, 45, 17, 76, 9, 64],
];
const PROMPTS = [[3, 17, 9, 5], [100, 64, 2, 9], [5, 3, 17, 100]];
/** The mixed batch's rows: both adapters and the base in one session run. */
const ROWS = ["emb", "tok", null] as const;

const SPEC = {
  schema: join(REPO_ROOT, "schemas/onnx-manifest.schema.json"),
  ids: IDS,
  prompts: PROMPTS,
  newTokens: NEW,
  models: {
    llama: {
      // PEFT's "auto" saves the embedding's base weight beside its LoRA (the embedding is named embed_tokens).
      family: "llama", targets: ["q_proj", "v_proj", "embed_tokens"], changedFrom: "emb", savedWhole: "model.embed_tokens.base_layer.weight",
      adapters: {
        emb: { r: 4, alpha: 8, targets: ["embed_tokens", "q_proj", "v_proj"] },
        tok: { r: 2, alpha: 4, targets: ["q_proj", "v_proj"], tokens: { embed_tokens: [3, 17, 64] } },
      },
    },
    gpt2: {
      // save_embedding_layers=True saves lm_head.weight (tied to wte; PEFT saves "lm_head" / "embed_tokens" layers only).
      family: "gpt2", targets: ["c_attn", "wte", "lm_head"], savedWhole: "lm_head.weight",
      adapters: {
        emb: { r: 4, alpha: 8, targets: ["wte", "c_attn"], saveEmbedding: true },
        // The list form: the input embedding; GPT-2 ties lm_head to it.
        tok: { r: 2, alpha: 4, targets: ["c_attn"], tokens: [5, 9, 100] },
        // LoRA on the tied lm_head as well: PEFT saves both layers' base weights (`<m>.base_layer.weight`), the base's.
        head: { r: 2, alpha: 4, targets: ["wte", "lm_head"] },
      },
    },
    gemma: {
      // Tied, embed_scale = sqrt(32); exported below by the CLI, not the fixture.
      family: "gemma", zoo: true, cli: true, embedScale: true, targets: ["q_proj", "v_proj", "embed_tokens"], savedWhole: "model.embed_tokens.base_layer.weight",
      adapters: {
        emb: { r: 4, alpha: 8, targets: ["embed_tokens", "q_proj", "v_proj"] },
        tok: { r: 2, alpha: 4, targets: ["q_proj", "v_proj"], tokens: { embed_tokens: [3, 17, 64] } },
      },
    },
  },
};

interface Fixture {
  base: string;
  tied: boolean;
  adapterInputs: string;
  changedEmbedding?: string;
  embedScale?: number;
  baseLogits: number[];
  baseTokens: number[][];
  adapters: Record<string, { dir: string; logits: number[]; tokens: number[][]; keys: string[] }>;
}

let tmp: ReturnType<typeof tempDir>;
let fx: Record<string, Fixture>;

beforeAll(async () => {
  tmp = tempDir("loraport-embedding-");
  const code = readFileSync(join(import.meta.dirname, "embedding_adapters_fixture.py"), "utf8");
  const out = runPython(code, [tmp.dir, JSON.stringify(SPEC)], { timeoutMs: 400_000 }).trim().split("\n");
  fx = JSON.parse(out[out.length - 1]!) as Record<string, Fixture>;
  const g = fx["gemma"]!;
  const r = await cli(["export", "--base", g.base, "--out", g.adapterInputs, "--targets", SPEC.models.gemma.targets.join(","), "--json"]);
  expect(r.code, r.stderr).toBe(0);
  // The CLI's manifest is valid under the schema too (the fixture checks its own exports').
  runPython("import json, sys, jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))", [join(g.adapterInputs, MANIFEST_NAME), SPEC.schema]);
}, limit(400_000));

afterAll(() => tmp?.cleanup());

function maxAbs(got: Float32Array, want: readonly number[]): number {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  return worst;
}

async function load(f: Fixture): Promise<LoraModel> {
  const model = await LoraModel.load(f.adapterInputs, { executionProviders: ["cpu"] });
  for (const [a, { dir }] of Object.entries(f.adapters)) await model.registerAdapter(a, (await readPeftAdapter(dir)).adapter);
  return model;
}

const refLogits = (f: Fixture, a: string | null): number[] => (a === null ? f.baseLogits : f.adapters[a]!.logits);
const refTokens = (f: Fixture, a: string | null): number[][] => (a === null ? f.baseTokens : f.adapters[a]!.tokens);

describe.each(["llama", "gpt2", "gemma"])("%s", (name) => {
  it("PEFT saved what the cases need; the export has embedding LoRA and trainable-token inputs (tied head for gpt2, gemma)", () => {
    const f = fx[name]!;
    const emb = f.adapters["emb"]!.keys;
    expect(emb.some((k) => k.endsWith(".lora_embedding_A"))).toBe(true);
    // save_embedding_layers: a whole embedding weight, equal to the base's, which the runtime recognises by its hash.
    expect(emb).toContain(`base_model.model.${SPEC.models[name as keyof typeof SPEC.models].savedWhole}`);
    expect(f.adapters["tok"]!.keys.some((k) => k.endsWith(".token_adapter.trainable_tokens_delta"))).toBe(true);
    const m = JSON.parse(readFileSync(join(f.adapterInputs, MANIFEST_NAME), "utf8")) as OnnxManifest;
    expect(m.lora.filter((e) => e.kind === "embedding").length).toBe(1);
    expect(m.tokens?.map((t) => t.tied_head)).toEqual([f.tied ? "lm_head" : null]);
    expect(f.tied).toBe(name !== "llama");
    // Gemma's embedding really scales (else its parity below would not test the scale handling).
    if (name === "gemma") expect(f.embedScale).toBeCloseTo(Math.sqrt(32), 5);
  });

  it("logits equal PyTorch + PEFT for each adapter alone and in one mixed batch with the base", async () => {
    const f = fx[name]!;
    await using model = await load(f);
    for (const a of [null, ...Object.keys(f.adapters)]) {
      const got = (await model.run({ inputIds: IDS }, { adapter: a })).logits.data as Float32Array;
      const err = maxAbs(got, refLogits(f, a));
      console.log(`${name} ${a ?? "base"}: max |Δlogit| vs PEFT ${err.toExponential(2)}`);
      expect(err, `${a ?? "base"}`).toBeLessThan(TOL);
    }
    // Row b uses ROWS[b] on IDS[b % 2]: the references are those rows of each adapter's own run.
    const inputIds = ROWS.map((_, b) => IDS[b % 2]!);
    const mixed = (await model.run({ inputIds }, { adapters: [...ROWS] })).logits.data as Float32Array;
    const per = mixed.length / ROWS.length;
    let worst = 0;
    ROWS.forEach((a, b) => {
      const want = refLogits(f, a).slice((b % 2) * per, (b % 2 + 1) * per);
      worst = Math.max(worst, maxAbs(mixed.slice(b * per, (b + 1) * per), want));
    });
    console.log(`${name} mixed batch [emb, tok, base]: max |Δlogit| vs PEFT ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(TOL);
    // The adapters change the output (else the parity above would prove nothing).
    expect(maxAbs(new Float32Array(f.adapters["tok"]!.logits), f.baseLogits)).toBeGreaterThan(1e-2);
    expect(maxAbs(new Float32Array(f.adapters["emb"]!.logits), f.baseLogits)).toBeGreaterThan(1e-2);
  });

  it("mixed greedy generation: each row's tokens equal transformers + PEFT generate", async () => {
    const f = fx[name]!;
    await using model = await load(f);
    const res = await generateBatch(model, PROMPTS, { adapters: [...ROWS], maxNewTokens: NEW, temperature: 0, ignoreEos: true }, () => undefined);
    expect(res.map((r) => r.tokens)).toEqual(ROWS.map((a, b) => refTokens(f, a)[b]));
  });
});

describe("serving", () => {
  it("the local engine loads both adapters from their folders and answers concurrent requests as PEFT generate", async () => {
    const f = fx["gpt2"]!;
    await using engine = await LocalEngine.start(f.adapterInputs, { executionProviders: ["cpu"], maxBatchSize: 4 });
    await engine.loadAdapter("emb", f.adapters["emb"]!.dir);
    await engine.loadAdapter("tok", f.adapters["tok"]!.dir);
    // Submitted together: the scheduler decodes them in one batch, rows on different adapters.
    const results = await Promise.all(ROWS.map((a, b) => engine.generate({ prompt: PROMPTS[b]!, options: { adapter: a, maxNewTokens: NEW, temperature: 0, ignoreEos: true } }).result));
    expect(results.map((r) => r.tokens)).toEqual(ROWS.map((a, b) => refTokens(f, a)[b]));
  });
});

describe(".onnx_adapter", () => {
  it("Python onnxruntime runs the export with loraport's file for the trainable-token adapter active, as PEFT", async () => {
    const f = fx["llama"]!;
    // ORT's Python run needs the adapter's inputs to have defaults: the exporter's own lora_defaults step (the graph
    // is not traced again), applied to a copy of the llama export.
    const withDefaults = join(tmp.dir, "llama-ai-defaults");
    cpSync(f.adapterInputs, withDefaults, { recursive: true });
    runPython(`
import json, sys
from pathlib import Path
from loraport_sidecar.export.lora_defaults import add_lora_defaults
d = Path(sys.argv[1])
m = json.loads((d / "loraport-onnx.json").read_text())
add_lora_defaults(d / m["model_file"], m["lora"], [], {}, m["tokens"])
`, [withDefaults]);
    const file = join(tmp.dir, "tok.onnx_adapter");
    const written = await exportOnnxAdapter(f.adapterInputs, (await readPeftAdapter(f.adapters["tok"]!.dir)).adapter, file);
    expect(written.parameters).toContain("tokens_ids.model.embed_tokens");
    const script = readFileSync(join(import.meta.dirname, "ort_adapter_run.py"), "utf8");
    const res = runPythonJson<{ logits: number[]; parameters: Record<string, number[]> }>(script, [withDefaults, file, JSON.stringify(IDS)]);
    expect(res.parameters["tokens_rows.model.embed_tokens"]).toEqual([1, 3, 64]);
    const err = maxAbs(new Float32Array(res.logits), f.adapters["tok"]!.logits);
    console.log(`llama tok through .onnx_adapter (Python onnxruntime): max |Δlogit| vs PEFT ${err.toExponential(2)}`);
    expect(err).toBeLessThan(TOL);
  });
});

describe("refused, with what to do", () => {
  it("a saved embedding that is not the export's base embedding: merge instead", async () => {
    const f = fx["llama"]!;
    await using model = await LoraModel.load(f.adapterInputs, { executionProviders: ["cpu"] });
    const changed = (await readPeftAdapter(f.changedEmbedding!)).adapter;
    const err = await model.registerAdapter("changed", changed).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedFeatureError);
    expect((err as Error).message).toMatch(/^save_embedding_layers: model\.embed_tokens\.base_layer\.weight: .*differs from the export's base weight.*merge the adapter instead/);
    expect((err as Error).message).not.toContain("\n");
    expect(model.adapters).toEqual([]);
  });

  it("an export without the embedding inputs (an earlier export, or the embedding not in --targets): re-export", async () => {
    const f = fx["llama"]!;
    // The same graph under a manifest as exports before embedding serving wrote it: no token entries, no embedding entry.
    const old = join(tmp.dir, "llama-ai-old");
    cpSync(f.adapterInputs, old, { recursive: true });
    const m = JSON.parse(readFileSync(join(old, MANIFEST_NAME), "utf8")) as Record<string, unknown> & OnnxManifest;
    const { tokens: _dropped, ...rest } = m;
    writeFileSync(join(old, MANIFEST_NAME), JSON.stringify({ ...rest, lora: m.lora.filter((e) => e.kind !== "embedding") }));
    await using model = await LoraModel.load(old, { executionProviders: ["cpu"] });
    for (const [a, key] of [["emb", /^lora_embedding: model\.embed_tokens: .*re-export with it among --targets/], ["tok", /^trainable_token_indices: .*no trainable-token inputs.*re-export with the embedding among --targets/]] as const) {
      const err = await model.registerAdapter(a, (await readPeftAdapter(f.adapters[a]!.dir)).adapter).then(() => undefined, (e: unknown) => e);
      expect(err, a).toBeInstanceOf(UnsupportedFeatureError);
      expect((err as Error).message).toMatch(key);
    }
  });
});
