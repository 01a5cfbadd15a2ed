/** LoraConfig parsing, refusals, matching and Python-style JSON; loralib option resolution; typed errors. */
import { describe, expect, it } from "vitest";
import { configFromJson, isTargeted, loraConfig, matchesTarget, matchPatternKey, parseLoraConfig, resolveModule, serializeLoraConfig } from "../../src/adapter/config.js";
import { adapterFromStateDict } from "../../src/adapter/peft-io.js";
import { convertLoralibToPeft } from "../../src/adapter/convert.js";
import { loralibFromStateDict, parseEnableLora } from "../../src/adapter/loralib.js";
import { dumpsPy, parsePyJson, pyFloatRepr } from "../../src/adapter/pyjson.js";
import { AdapterError, FormatError, UnsupportedFeatureError } from "../../src/errors.js";
import { tensor } from "../../src/tensor/index.js";
import { runPythonJson } from "../helpers/python.js";

const base = { peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["q_proj"] };

describe("Python-style JSON", () => {
  it("float repr and json.dumps(indent=2, sort_keys=True) match Python's, in the same run", () => {
    const xs = [0, 1, 16, 0.05, 1e-5, 0.0001, 1e-4 * 3, 123456789012345.6, 1e16, 1e22, 5.656854249492381, -2.5, 1 / 3, 2 ** -30];
    const py = runPythonJson<{ reprs: string[]; doc: string }>(
      `import json,sys; xs=[float(x) for x in json.loads(sys.argv[1])]; print(json.dumps({"reprs":[repr(x) for x in xs], "doc": json.dumps({"b":[1.0,2,"é\\n"],"a":{},"c":[],"d":{"z":1e-05,"y":None}}, indent=2, sort_keys=True)}))`,
      [JSON.stringify(xs)],
    );
    expect(xs.map(pyFloatRepr)).toEqual(py.reprs);
    const parsed = parsePyJson(py.doc, "doc.json");
    expect(dumpsPy(parsed.value, parsed.floatPaths)).toBe(py.doc);
  });
});

describe("LoraConfig", () => {
  it("keeps and reports unknown keys, drops runtime_config, defaults the rest", () => {
    const { config, warnings } = configFromJson({ ...base, future_key: 1, runtime_config: {} }, "cfg.json");
    expect(config.unknown).toEqual({ future_key: 1 });
    expect(warnings.some((w) => w.includes("future_key"))).toBe(true);
    expect(warnings.some((w) => w.includes("runtime_config"))).toBe(true);
    expect(config.lora_dropout).toBe(0);
    expect(serializeLoraConfig(config)).not.toContain("future_key");
    expect(serializeLoraConfig(config, { keepUnknown: true })).toContain("future_key");
  });

  it("names the bad key and what was expected", () => {
    const bad = (extra: Record<string, unknown>) => () => configFromJson({ ...base, ...extra } as never, "cfg.json");
    expect(bad({ r: "x" })).toThrow(/cfg\.json: key 'r' must be a positive integer/);
    expect(bad({ lora_alpha: null })).toThrow(/'lora_alpha' must be a number/);
    expect(bad({ bias: "some" })).toThrow(/'bias'/);
    expect(bad({ rank_pattern: { q: 2.5 } })).toThrow(/rank_pattern' entry 'q'/);
    expect(() => configFromJson({ r: 4 } as never, "cfg.json")).toThrow(/'peft_type' is missing/);
    expect(() => parseLoraConfig("{ not json", "cfg.json")).toThrow(FormatError);
  });

  for (const [key, value] of [
    ["alora_invocation_tokens", [1, 2]], ["use_qalora", true], ["use_bdlora", { nblocks: 2 }], ["arrow_config", { top_k: 3 }],
    ["kasa_config", { beta: 1e-4 }], ["monteclora_config", { num_samples: 8 }], ["layer_replication", [[0, 2]]],
    ["target_parameters", ["experts.gate_up_proj"]], ["init_lora_weights", "pissa"], ["init_lora_weights", "pissa_niter_4"],
    ["init_lora_weights", "olora"], ["init_lora_weights", "loftq"], ["init_lora_weights", "corda"],
  ] as const) {
    it(`refuses ${key}=${JSON.stringify(value)} with UnsupportedFeatureError naming the key`, () => {
      try {
        configFromJson({ ...base, [key]: value } as never, "cfg.json");
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(UnsupportedFeatureError);
        expect((e as UnsupportedFeatureError).key).toBe(key);
      }
    });
  }

  it("accepts inits that leave the base alone", () => {
    for (const v of [true, false, "gaussian", "eva", "orthogonal"]) expect(() => configFromJson({ ...base, init_lora_weights: v }, "c")).not.toThrow();
  });

  it("matches targets and patterns as PEFT does", () => {
    expect(matchesTarget(["q_proj"], "model.layers.0.self_attn.q_proj")).toBe(true);
    expect(matchesTarget(["q_proj"], "model.layers.0.self_attn.xq_proj")).toBe(false);
    expect(matchesTarget(".*\\.(q|v)_proj", "model.layers.0.self_attn.v_proj")).toBe(true);
    expect(matchesTarget("q_proj", "model.layers.0.self_attn.q_proj")).toBe(false); // a string is a full match
    expect(matchPatternKey(["layers.1.self_attn.q_proj"], "model.layers.1.self_attn.q_proj")).toBe("layers.1.self_attn.q_proj");
    expect(matchPatternKey(["layers.1.self_attn.q_proj"], "model.layers.11.self_attn.q_proj")).toBeUndefined();
    expect(matchPatternKey(["^model.layers.0.self_attn.v_proj"], "model.layers.0.self_attn.v_proj")).toBeDefined();
    expect(matchPatternKey(["^layers.0.self_attn.v_proj"], "model.layers.0.self_attn.v_proj")).toBeUndefined();
    const c = loraConfig({ r: 8, lora_alpha: 16, target_modules: ["q_proj"], modules_to_save: ["classifier"], exclude_modules: ["layers.0.self_attn.q_proj"] });
    expect(isTargeted(c, "model.layers.0.self_attn.q_proj")).toBe(false);
    expect(isTargeted(c, "model.layers.1.self_attn.q_proj")).toBe(true);
    expect(resolveModule(loraConfig({ r: 4, lora_alpha: 8, use_rslora: true }), "x").scaling).toBe(4);
  });
});

describe("adapter tensors", () => {
  const cfg = loraConfig({ r: 2, lora_alpha: 4, target_modules: ["q"] });
  const A = tensor("F32", [2, 3]);
  const B = tensor("F32", [5, 2]);
  it("a module without lora_B is a FormatError naming the module", () => {
    expect(() => adapterFromStateDict(cfg, new Map([["base_model.model.m.q.lora_A.weight", A]]), "f.safetensors")).toThrow(/module m\.q: has lora_A but no lora_B/);
  });
  it("a rank that disagrees with the config names the module and both", () => {
    const c4 = loraConfig({ r: 4, lora_alpha: 4, target_modules: ["q"] });
    expect(() => adapterFromStateDict(c4, new Map([["base_model.model.m.q.lora_A.weight", A], ["base_model.model.m.q.lora_B.weight", B]]), "f")).toThrow(/m\.q: lora_A has rank 2.*r=4/);
  });
  it("variant parameters are refused, not dropped", () => {
    expect(() => adapterFromStateDict(cfg, new Map([["base_model.model.m.q.lora_diag", A]]), "f")).toThrow(UnsupportedFeatureError);
  });
  it("keys without the prefix are accepted and reported", () => {
    const { adapter, warnings } = adapterFromStateDict(cfg, new Map([["m.q.lora_A.weight", A], ["m.q.lora_B.weight", B]]), "f");
    expect(adapter.modules.has("m.q")).toBe(true);
    expect(warnings[0]).toMatch(/lack the 'base_model\.model\.' prefix/);
  });
});

describe("loralib options", () => {
  const mk = (rows: number, cols: number) => tensor("F32", [rows, cols]);
  it("parses --enable-lora both ways and refuses junk", () => {
    expect(parseEnableLora("q,v")).toEqual([true, false, true]);
    expect(parseEnableLora("1,0,1")).toEqual([true, false, true]);
    expect(parseEnableLora("k")).toEqual([false, true, false]);
    expect(() => parseEnableLora("x,y")).toThrow(AdapterError);
  });
  it("without a fitting preset, asks for --preset or --r/--alpha", () => {
    const ck = loralibFromStateDict("x.pt", new Map([["enc.q.lora_A", mk(4, 10)], ["enc.q.lora_B", mk(10, 4)]]));
    expect(() => convertLoralibToPeft(ck)).toThrow(/pass --preset NAME or give --r and --alpha/);
    const { adapter, report } = convertLoralibToPeft(ck, { r: 4, alpha: 8 });
    expect(adapter.config.r).toBe(4);
    expect(report.lines[0]).toContain("(none)");
  });
  it("a wrong --r is an error naming the module and the shapes", () => {
    const ck = loralibFromStateDict("x.pt", new Map([["module.transformer.h.0.attn.c_attn.lora_A", mk(8, 1024)], ["module.transformer.h.0.attn.c_attn.lora_B", mk(2048, 4)]]));
    expect(() => convertLoralibToPeft(ck, { r: 8 })).toThrow(/transformer\.h\.0\.attn\.c_attn\.lora_A has 8 rows but r=8 with 2 enabled block\(s\) needs 16/);
    expect(() => convertLoralibToPeft(ck, { preset: "nope" })).toThrow(/unknown preset 'nope'/);
    expect(convertLoralibToPeft(ck).report.resolved.preset?.name).toBe("gpt2-medium-nlg");
  });
});

describe("presets and factors", () => {
  const z = (rows: number, cols: number) => tensor("F32", [rows, cols]);
  it("detects RoBERTa-large and DeBERTa-v2-XXL from key patterns and widths, heads as modules_to_save", () => {
    const rl = loralibFromStateDict("rl.bin", new Map([
      ["roberta.encoder.layer.0.attention.self.query.lora_A", z(8, 1024)], ["roberta.encoder.layer.0.attention.self.query.lora_B", z(1024, 8)],
      ["classifier.dense.weight", z(1024, 1024)], ["classifier.out_proj.bias", tensor("F32", [3])],
    ]));
    const a = convertLoralibToPeft(rl);
    expect(a.report.resolved.preset?.name).toBe("roberta-large-glue");
    expect(a.adapter.config.modules_to_save).toEqual(["classifier"]);
    const deb = loralibFromStateDict("d.bin", new Map([
      ["deberta.encoder.layer.0.attention.self.query_proj.lora_A", z(16, 1536)], ["deberta.encoder.layer.0.attention.self.query_proj.lora_B", z(1536, 16)],
      ["deberta.encoder.layer.0.attention.self.value_proj.lora_A", z(16, 1536)], ["deberta.encoder.layer.0.attention.self.value_proj.lora_B", z(1536, 16)],
      ["pooler.dense.weight", z(1536, 1536)], ["classifier.weight", z(3, 1536)],
    ]));
    const d = convertLoralibToPeft(deb);
    expect(d.report.resolved.preset?.name).toBe("deberta-v2-xxlarge-glue");
    expect([d.adapter.config.r, d.adapter.config.lora_alpha]).toEqual([16, 32]);
    expect(d.adapter.config.modules_to_save).toEqual(["pooler", "classifier"]);
    expect(d.adapter.config.task_type).toBe("SEQ_CLS");
  });

  it("adapterFactors: B (scaling folded in) · A equals ΔW, for Linear and (transposed) Conv1D", async () => {
    const { adapterFactors } = await import("../../src/adapter/factors.js");
    const { deltaWeight } = await import("../../src/adapter/math.js");
    const A = tensor("F32", [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
    const B = tensor("F32", [4, 2], Float32Array.from([1, 0, 0, 1, 1, 1, 2, -1]));
    for (const kind of ["linear", "conv1d"] as const) {
      const adapter = { config: loraConfig({ r: 2, lora_alpha: 3, fan_in_fan_out: kind === "conv1d" }), modules: new Map([["m", { kind, A, B }]]), extraTensors: new Map() };
      const f = adapterFactors(adapter).get("m")!;
      expect([f.r, f.in, f.out, f.fanInFanOut]).toEqual([2, 3, 4, kind === "conv1d"]);
      const dw = deltaWeight(adapter.modules.get("m")!, 1.5).data as Float32Array;
      for (let o = 0; o < 4; o++) {
        for (let i = 0; i < 3; i++) {
          const v = f.B[o * 2]! * f.A[i]! + f.B[o * 2 + 1]! * f.A[3 + i]!;
          expect(dw[kind === "linear" ? o * 3 + i : i * 4 + o]).toBeCloseTo(v, 5);
        }
      }
    }
  });
});

describe("SIMD kernel helpers", () => {
  it("BF16 ↔ F32 in WebAssembly is bit-identical to the tensor helpers (all BF16 values; F32 edge cases and 1M random)", async () => {
    const { simdBf16 } = await import("../../src/adapter/lowrank-wasm.js");
    const { bf16ToF32, f32ToBF16 } = await import("../../src/tensor/index.js");
    const S = simdBf16();
    expect(S).not.toBeNull();
    const all = Uint16Array.from({ length: 65541 }, (_, i) => i & 0xffff);
    expect(new Uint32Array(S!.toF32(all).buffer)).toEqual(new Uint32Array(bf16ToF32(all).buffer));
    const bits = new Uint32Array(1_000_003);
    let x = 12345;
    for (let i = 0; i < bits.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bits[i] = x >>> 0;
    }
    [0x7f7fffff, 0x7f800000, 0xff800000, 0x7f800001, 0x7fc00000, 0xffffffff, 0x8000, 0x18000, 0x3f808000, 0x3f818000, 0x80000000, 0, 0xff7fffff, 0x7f7f8000].forEach((e, i) => (bits[i] = e));
    const f = new Float32Array(bits.buffer);
    expect(S!.fromF32(f)).toEqual(f32ToBF16(f));
  });
});
