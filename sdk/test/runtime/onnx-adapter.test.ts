/**
 * `.onnx_adapter` files written by loraport: read by Python onnxruntime (`AdapterFormat.read_adapter`) and run with
 * `RunOptions.add_active_adapter` on an adapter-inputs export made with LoRA input defaults, logits equal PyTorch +
 * PEFT computed in the same run (and the base's with no adapter). Also the reader against files Python onnxruntime
 * writes, and damaged files.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { FormatError, UnsupportedFeatureError } from "../../src/errors.js";
import { decodeOnnxAdapter, encodeOnnxAdapter, readOnnxAdapter } from "../../src/formats/onnx-adapter/index.js";
import { LoraModel } from "../../src/runtime/lora-model.js";
import { exportOnnxAdapter } from "../../src/runtime/onnx-adapter-export.js";
import { registerConvert } from "../../src/cli/commands/convert.js";
import { registerExport } from "../../src/cli/commands/export.js";
import { runCli } from "../helpers/cli.js";
import { runPython, runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const TOL = 1e-4;
const IDS = [
  [1, 5, 9, 17, 33, 2, 64, 100, 7, 3],
  [12, 0, 99, 45, 8, 76, 31, 22, 5, 118],
];
const SPEC = {
  ids: IDS,
  paddedMask: [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
  models: {
    // rsLoRA on GPT-2 (Conv1D, fan_in_fan_out) and a RoBERTa SEQ_CLS adapter whose classifier is saved whole.
    // GPT-2's export is made by the CLI below (loraport export --ort-adapter-defaults), RoBERTa's by the Python exporter.
    gpt2: { family: "gpt2", targets: ["c_attn", "c_proj"], adapters: [[8, 16, true]], loraDefaults: "none" },
    roberta: { family: "roberta", targets: ["query", "value"], adapters: [[4, 8, false, "SEQ_CLS"]], loraDefaults: "only" },
  },
};

interface Fixture {
  base: string;
  /** The one export of each model: adapter-inputs with LoRA input defaults (what ORT's adapter mechanism needs). */
  adapterInputsWithDefaults: string;
  baseLogits: number[];
  merged?: string;
  adapters: Record<string, { dir: string; logits: number[] }>;
}

const tmp = tempDir("loraport-onnx-adapter-");
afterAll(() => tmp.cleanup());
let fx: Record<string, Fixture>;

beforeAll(async () => {
  const code = readFileSync(join(import.meta.dirname, "fixtures.py"), "utf8");
  const out = runPython(code, [tmp.dir, JSON.stringify(SPEC)]).trim().split("\n");
  fx = JSON.parse(out.at(-1)!) as Record<string, Fixture>;
  const gpt2 = fx["gpt2"]!;
  gpt2.adapterInputsWithDefaults = join(tmp.dir, "gpt2-ai-defaults");
  await runCli([registerExport], ["export", "--base", gpt2.base, "--out", gpt2.adapterInputsWithDefaults, "--targets", "c_attn,c_proj", "--ort-adapter-defaults", "--json"]);
}, limit(400_000));

function maxErr(got: ArrayLike<number>, want: readonly number[]): { abs: number; at: number } {
  expect(got.length).toBe(want.length);
  let abs = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (!(d <= abs)) { abs = d; at = i; }
  }
  return { abs, at };
}

function runOrt(exportDir: string, adapterFile: string): { logits: number[]; parameters: Record<string, number[]> } {
  const script = readFileSync(join(import.meta.dirname, "ort_adapter_run.py"), "utf8");
  return JSON.parse(runPython(script, [exportDir, adapterFile, JSON.stringify(IDS)]).trim().split("\n").at(-1)!) as { logits: number[]; parameters: Record<string, number[]> };
}

describe.each(["gpt2", "roberta"])("%s: an .onnx_adapter run by Python onnxruntime", (name) => {
  it("sets every LoRA input through add_active_adapter and gives PEFT's logits", async () => {
    const f = fx[name]!;
    const { adapter } = await readPeftAdapter(f.adapters["a0"]!.dir);
    const file = join(tmp.dir, `${name}.onnx_adapter`);
    const written = await exportOnnxAdapter(f.adapterInputsWithDefaults, adapter, file);
    const py = runOrt(f.adapterInputsWithDefaults, file);
    expect(Object.keys(py.parameters).sort()).toEqual([...written.parameters].sort());
    const vsPeft = maxErr(py.logits, f.adapters["a0"]!.logits);
    console.log(`${name}: ORT + .onnx_adapter vs PEFT max abs ${vsPeft.abs.toExponential(2)} at ${vsPeft.at}`);
    expect(vsPeft.abs).toBeLessThan(TOL);
    // With no adapter active the defaults are the base model.
    expect(maxErr(runOrt(f.adapterInputsWithDefaults, "-").logits, f.baseLogits).abs).toBeLessThan(TOL);
  });

  it("loraport convert --to onnx-adapter writes the same file the API does", async () => {
    const f = fx[name]!;
    const file = join(tmp.dir, `${name}-cli.onnx_adapter`);
    const out = JSON.parse(await runCli([registerConvert], ["convert", f.adapters["a0"]!.dir, "--to", "onnx-adapter", "--export", f.adapterInputsWithDefaults, "--out", file, "--json"])) as { to: string; parameters: number };
    expect(out.to).toBe("onnx-adapter");
    expect(readFileSync(file)).toEqual(readFileSync(join(tmp.dir, `${name}.onnx_adapter`)));
    await expect(runCli([registerConvert], ["convert", f.adapters["a0"]!.dir, "--to", "onnx-adapter", "--out", join(tmp.dir, "z.onnx_adapter")])).rejects.toThrow(/--export/);
  });

  it("LoraModel refuses the export with defaults (onnxruntime-node would ignore its adapter feeds)", async () => {
    await expect(LoraModel.load(fx[name]!.adapterInputsWithDefaults)).rejects.toThrow(UnsupportedFeatureError);
  });
});

describe("the .onnx_adapter format", () => {
  it("reads files Python onnxruntime writes, exactly", () => {
    const file = join(tmp.dir, "py.onnx_adapter");
    const py = runPythonJson<Record<string, number[]>>(`
import json, sys, numpy as np, onnxruntime as ort
f = ort.AdapterFormat(); f.set_adapter_version(7); f.set_model_version(3)
vals = {"w": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "i": np.array([-2, 9], dtype=np.int64), "h": np.arange(5, dtype=np.float16)}
f.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in vals.items()})
f.export_adapter(sys.argv[1])
print(json.dumps({k: v.reshape(-1).astype(np.float64).tolist() for k, v in vals.items()}))
`, [file]);
    const got = decodeOnnxAdapter(new Uint8Array(readFileSync(file)), file);
    expect([got.formatVersion, got.adapterVersion, got.modelVersion]).toEqual([1, 7, 3]);
    const byName = new Map(got.parameters.map((p) => [p.name, p]));
    expect(byName.get("w")).toMatchObject({ dtype: "F32", dims: [3, 4] });
    expect(Array.from(new Float32Array(byName.get("w")!.data.slice().buffer))).toEqual(py["w"]!.map(Math.fround));
    expect(byName.get("i")).toMatchObject({ dtype: "I64", dims: [2] });
    expect(Array.from(new BigInt64Array(byName.get("i")!.data.slice().buffer), Number)).toEqual(py["i"]);
    expect(byName.get("h")).toMatchObject({ dtype: "F16", dims: [5] });
  });

  it("round-trips what it writes", async () => {
    const data = new Float32Array([1.5, -2, 3.25, 0]);
    const bytes = encodeOnnxAdapter([{ name: "x", dtype: "F32", dims: [2, 2], data: new Uint8Array(data.buffer) }, { name: "empty", dtype: "F32", dims: [0, 3], data: new Uint8Array(0) }], { adapterVersion: 4 });
    const file = join(tmp.dir, "rt.onnx_adapter");
    writeFileSync(file, bytes);
    const back = await readOnnxAdapter(file);
    expect(back.adapterVersion).toBe(4);
    expect(back.parameters.map((p) => [p.name, p.dims])).toEqual([["x", [2, 2]], ["empty", [0, 3]]]);
    expect(Array.from(new Float32Array(back.parameters[0]!.data.slice().buffer))).toEqual([1.5, -2, 3.25, 0]);
  });

  it("gives a FormatError, never another exception, for damaged files", () => {
    const data = new Float32Array(64).map((_, i) => i);
    const good = encodeOnnxAdapter([{ name: "a", dtype: "F32", dims: [8, 8], data: new Uint8Array(data.buffer) }, { name: "b", dtype: "I64", dims: [2], data: new Uint8Array(16) }]);
    let x = 12345;
    const rnd = (): number => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32);
    let typed = 0, ok = 0;
    for (let i = 0; i < 3000; i++) {
      const m = i % 10 === 0 ? good.slice(0, Math.floor(rnd() * good.length)) : good.slice();
      if (i % 10 !== 0) for (let k = 0; k < 1 + Math.floor(rnd() * 3); k++) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
      try {
        decodeOnnxAdapter(m, "fuzz.onnx_adapter");
        ok++;
      } catch (err) {
        if (!(err instanceof FormatError)) throw err;
        typed++;
      }
    }
    expect(typed).toBeGreaterThan(0);
    expect(typed + ok).toBe(3000);
    expect(() => decodeOnnxAdapter(new TextEncoder().encode("PK\u0003\u0004not a flatbuffer"), "x.onnx_adapter")).toThrow(/file identifier/);
  });

  it("refuses a merged export, naming the mode", async () => {
    const { adapter } = await readPeftAdapter(fx["gpt2"]!.adapters["a0"]!.dir);
    const src = fx["gpt2"]!.adapterInputsWithDefaults;
    const manifest = JSON.parse(readFileSync(join(src, "loraport-onnx.json"), "utf8")) as Record<string, unknown>;
    const fake = join(tmp.dir, "fake-merged");
    runPython(`import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2])`, [src, fake]);
    writeFileSync(join(fake, "loraport-onnx.json"), JSON.stringify({ ...manifest, mode: "merged", lora: [], lora_index_input: null }));
    await expect(exportOnnxAdapter(fake, adapter, join(tmp.dir, "y.onnx_adapter"))).rejects.toThrow(UnsupportedFeatureError);
  });
});
