/**
 * PEFT LoRA ↔ llama.cpp's GGUF LoRA adapter.
 *
 * llama.cpp applies `scale = user_scale · α / rank` with one global α (`adapter.lora.alpha`) and the rank
 * read from each lora_b (`llama-adapter.h`), or `user_scale` alone when α = 0. PEFT's per-module scaling
 * (α/r, α/√r under rsLoRA, `rank_pattern`, `alpha_pattern`) is therefore baked into each lora_b:
 * B' = B · s_PEFT · r / α, so that llama.cpp's α/r · B'·A = s_PEFT · B·A for every module. With no
 * rsLoRA and no alpha_pattern the factor is 1 and B is written as it is (what llama.cpp's converter writes).
 * Q/K lora_b rows are permuted like the base weights for the `llama` architecture. Reading back gives an
 * adapter with the baked B, `lora_alpha = α` and a `rank_pattern` for the ranks that differ: the same
 * ΔW, exactly for F32.
 */
import { AdapterError, FormatError, UnsupportedFeatureError } from "../errors.js";
import { GgufType, LLAMA_FILE_TYPE, gguf, numberValue, stringValue, type GgufHeader, type GgufValue } from "../formats/gguf/index.js";
import { castTo, fromFloat32, toFloat32, type Tensor } from "../tensor/index.js";
import { moduleRank, type LoraAdapter, type LoraModule } from "./adapter.js";
import { loraConfig, resolveModule } from "./config.js";
import { archForGgufName, ggufModuleName, hfModuleName, permuteHeads, permuteRows } from "./gguf-arch.js";
import type { GgufBaseInfo } from "./gguf-hparams.js";

export type GgufOutType = "F32" | "F16" | "BF16";

export interface GgufAdapterFile {
  readonly metadata: Array<readonly [string, GgufValue]>;
  readonly tensors: Array<readonly [string, Tensor]>;
  /** One line per module whose B was rescaled, and other notes. */
  readonly lines: readonly string[];
}

const MERGE_INSTEAD = "llama.cpp's GGUF LoRA cannot represent it; merge instead (loraport merge --base <HF folder> --adapter <dir> --to gguf --out merged.gguf: a merged base GGUF in one step)";

/** Refuse what a GGUF LoRA cannot hold, naming the key and saying to merge instead. */
function refuseUnrepresentable(adapter: LoraAdapter): void {
  const c = adapter.config;
  if (c.use_dora) throw new UnsupportedFeatureError("use_dora", `DoRA magnitudes: ${MERGE_INSTEAD}`);
  if (c.lora_bias) throw new UnsupportedFeatureError("lora_bias", `lora_B bias: ${MERGE_INSTEAD}`);
  const extras = [...adapter.extraTensors.keys()];
  if (extras.length > 0) {
    const key = c.modules_to_save?.length ? "modules_to_save" : c.bias !== "none" ? "bias" : "modules_to_save";
    throw new UnsupportedFeatureError(key, `tensors saved whole (${extras.slice(0, 3).join(", ")}${extras.length > 3 ? ", ..." : ""}): ${MERGE_INSTEAD}`);
  }
  for (const [name, m] of adapter.modules) {
    if (m.magnitude) throw new UnsupportedFeatureError("use_dora", `${name}: DoRA magnitude: ${MERGE_INSTEAD}`);
    if (m.bBias) throw new UnsupportedFeatureError("lora_bias", `${name}: lora_B bias: ${MERGE_INSTEAD}`);
    if (m.kind !== "linear") throw new UnsupportedFeatureError("target_modules", `${name}: ${m.kind} LoRA is not written to GGUF by loraport (nn.Linear targets only); merge instead`);
  }
}

/** The GGUF adapter's metadata and tensors for `adapter` on a base described by `base`. */
export function adapterToGguf(adapter: LoraAdapter, base: GgufBaseInfo, outtype: GgufOutType = "F32"): GgufAdapterFile {
  refuseUnrepresentable(adapter);
  if (adapter.modules.size === 0) throw new AdapterError("adapter has no LoRA modules to write");
  const alpha = adapter.config.lora_alpha;
  // llama.cpp reads α as an F32: compute the factor against the value it will see.
  const alphaF32 = Math.fround(alpha);
  const lines: string[] = [];
  const tensors: Array<readonly [string, Tensor]> = [];
  for (const [name, m] of adapter.modules) {
    const g = ggufModuleName(name);
    if (g === undefined) throw new UnsupportedFeatureError("target_modules", `module ${name} has no ${base.arch.name} GGUF tensor (llama.cpp names q/k/v/o_proj, gate/up/down_proj, lm_head)`);
    if (g === "output" && base.tied === true) {
      throw new UnsupportedFeatureError("target_modules", `module ${name}: the base ties its embeddings, so llama.cpp has no 'output' tensor for this LoRA; merge instead`);
    }
    const r = moduleRank(m);
    const { scaling } = resolveModule(adapter.config, name);
    const factor = alphaF32 === 0 ? scaling : (scaling * r) / alphaF32;
    const [out] = m.B.shape as [number, number];
    let B = toFloat32(m.B, factor !== 1);
    if (factor !== 1) {
      const f = Math.fround(factor);
      for (let i = 0; i < B.length; i++) B[i] = B[i]! * f;
      lines.push(`${name}: lora_B × ${factor.toPrecision(6)} (PEFT scaling ${scaling.toPrecision(6)} = llama.cpp α/r ${alphaF32}/${r} × factor)`);
    }
    const heads = permuteHeads(base.arch, g, base);
    if (heads !== undefined) B = permuteRows(B, out, r, heads, false, name);
    const Bt = factor === 1 && heads === undefined ? castTo(m.B, outtype) : fromFloat32(B, outtype, m.B.shape);
    tensors.push([`${g}.weight.lora_a`, castTo(m.A, outtype)]);
    tensors.push([`${g}.weight.lora_b`, Bt]);
  }
  const arch = base.arch.name;
  const metadata: Array<readonly [string, GgufValue]> = [
    ["general.architecture", gguf.str(arch)],
    ["general.type", gguf.str("adapter")],
    ["general.file_type", gguf.u32(LLAMA_FILE_TYPE[outtype])],
    ["adapter.type", gguf.str("lora")],
    ["adapter.lora.alpha", gguf.f32(alpha)],
    // Not read by llama.cpp's adapter loader; lets `--to peft` undo the Q/K permutation without the base.
    [`${arch}.attention.head_count`, gguf.u32(base.nHead)],
    [`${arch}.attention.head_count_kv`, gguf.u32(base.nHeadKv)],
    ["general.source", gguf.str("loraport")],
  ];
  return { metadata, tensors, lines };
}

/** A GGUF LoRA adapter (header and tensors) back to an in-memory PEFT adapter. `base` supplies head counts when the file lacks them. */
export function adapterFromGguf(header: GgufHeader, tensors: ReadonlyMap<string, Tensor>, base?: GgufBaseInfo): { adapter: LoraAdapter; lines: string[] } {
  const file = header.file;
  const meta = header.metadata;
  const type = stringValue(meta, "general.type");
  if (type !== "adapter") throw new FormatError(file, `general.type is ${JSON.stringify(type) ?? "missing"}, expected "adapter" (a GGUF LoRA adapter, not a model)`);
  const aType = stringValue(meta, "adapter.type");
  if (aType !== "lora") throw new FormatError(file, `adapter.type is ${JSON.stringify(aType) ?? "missing"}, expected "lora"`);
  const archName = stringValue(meta, "general.architecture");
  if (archName === undefined) throw new FormatError(file, "general.architecture is missing");
  const arch = archForGgufName(archName, file);
  if (meta.has("adapter.alora.invocation_tokens")) throw new UnsupportedFeatureError("adapter.alora.invocation_tokens", `${file}: aLoRA adapters are not converted to PEFT`);
  const alphaV = meta.get("adapter.lora.alpha");
  if (alphaV !== undefined && alphaV.type !== GgufType.FLOAT32) throw new FormatError(file, "adapter.lora.alpha is not FLOAT32");
  const alpha = alphaV === undefined ? 0 : (alphaV.value as number);
  const nHead = numberValue(meta, `${archName}.attention.head_count`) ?? base?.nHead;
  const nHeadKv = numberValue(meta, `${archName}.attention.head_count_kv`) ?? base?.nHeadKv ?? nHead;

  const pairs = new Map<string, { A?: Tensor; B?: Tensor }>();
  for (const [tname, t] of tensors) {
    const m = /^(.+)\.weight\.lora_([ab])$/.exec(tname);
    if (!m) throw new UnsupportedFeatureError("tensor", `${file}: tensor '${tname}' is not a lora_a/lora_b tensor (PEFT has no place for it)`);
    const p = pairs.get(m[1]!) ?? {};
    p[m[2] === "a" ? "A" : "B"] = t;
    pairs.set(m[1]!, p);
  }
  const modules = new Map<string, LoraModule>();
  const ranks = new Map<string, number>();
  for (const [g, { A, B }] of pairs) {
    if (!A || !B) throw new FormatError(file, `${g}: has ${A ? "lora_a" : "lora_b"} but no ${A ? "lora_b" : "lora_a"}`);
    const hf = hfModuleName(g);
    if (hf === undefined) throw new UnsupportedFeatureError("tensor", `${file}: '${g}' has no ${archName} HF module loraport knows`);
    if (g === "token_embd") throw new UnsupportedFeatureError("tensor", `${file}: token_embd LoRA is not converted to PEFT`);
    if (A.shape.length !== 2 || B.shape.length !== 2 || A.shape[0] !== B.shape[1]) {
      throw new FormatError(file, `${g}: lora_a [${A.shape.join(", ")}] and lora_b [${B.shape.join(", ")}] are not [r, in] and [out, r]`);
    }
    const r = A.shape[0]!;
    const out = B.shape[0]!;
    let Bout = B;
    const heads = nHead === undefined ? undefined : permuteHeads(arch, g, { nHead, nHeadKv: nHeadKv ?? nHead });
    if (arch.permuteQK && (g.endsWith(".attn_q") || g.endsWith(".attn_k")) && nHead === undefined) {
      throw new FormatError(file, `${g}: ${archName}.attention.head_count is missing; pass --base <HF folder or base .gguf> to undo the Q/K permutation`);
    }
    if (heads !== undefined) Bout = fromFloat32(permuteRows(toFloat32(B), out, r, heads, true, g), B.dtype, B.shape);
    modules.set(hf, { kind: "linear", A, B: Bout });
    ranks.set(hf, r);
  }
  // The rank most modules have is `r`; the others go to rank_pattern. α stays global: PEFT's α/r_m then
  // equals llama.cpp's α/r_m for every module. α = 0 means scale 1 in llama.cpp: α = r per module in PEFT.
  const counts = new Map<number, number>();
  for (const r of ranks.values()) counts.set(r, (counts.get(r) ?? 0) + 1);
  const r = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]![0];
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const [name, rm] of ranks) {
    const key = name.replace(/\./g, "\\.");
    if (rm !== r) rankPattern[key] = rm;
    if (alpha === 0 && rm !== r) alphaPattern[key] = rm;
  }
  const loraAlpha = alpha === 0 ? r : alpha;
  const config = loraConfig({
    task_type: "CAUSAL_LM",
    r,
    lora_alpha: loraAlpha,
    target_modules: [...new Set([...modules.keys()].map((n) => n.split(".").pop()!))].sort(),
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
    init_lora_weights: true,
    floatPaths: Number.isInteger(loraAlpha) ? [] : ["lora_alpha"],
  });
  const lines = [`${file}: ${archName} GGUF LoRA, ${modules.size} modules, α=${alpha}, r=${r}${Object.keys(rankPattern).length ? `, ${Object.keys(rankPattern).length} other ranks in rank_pattern` : ""}`];
  return { adapter: { config, modules, extraTensors: new Map() }, lines };
}
