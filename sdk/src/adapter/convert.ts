/**
 * Exact loralib → PEFT conversion.
 * - `lora.Linear`: the same A and B (PEFT names them `lora_A.weight`, `lora_B.weight`).
 * - `lora.Embedding` (A [r, num_embeddings], B [dim, r], as PEFT's): `lora_embedding_A` / `lora_embedding_B`. loralib
 *   keys do not say which modules are embeddings: names like `wte`, `embed_tokens`, `word_embeddings` are taken as
 *   embeddings, or the caller lists them (`embeddings`).
 * - `MergedLinear` with k enabled blocks of rank r: one PEFT LoRA of rank k·r on the fused module, A' = A,
 *   B' block-structured (block g's rows hold B_g in columns [g·r, (g+1)·r), disabled blocks zero), and
 *   lora_alpha' = k·alpha so that alpha'/r' = alpha/r: B'·A' equals loralib's ΔW term by term.
 * - `ConvLoRA` (lora.Conv2d, k×k kernel; B has r·k columns): an exact PEFT conv LoRA of its own rank, given by
 *   rank_pattern / alpha_pattern (see loralib-conv.ts); the report says which rank and why.
 * - Saved-whole tensors (classification heads) → `modules_to_save`, with `task_type: SEQ_CLS`.
 */
import { AdapterError } from "../errors.js";
import { toFloat32, type Tensor } from "../tensor/index.js";
import type { LoraAdapter, LoraModule } from "./adapter.js";
import { loraConfig } from "./config.js";
import { resolveLoralibOptions, type LoralibCheckpoint, type LoralibOptions, type ResolvedLoralib } from "./loralib.js";
import { convertLoralibConv, convertLoralibConvForBase, loralibConvKernel } from "./loralib-conv.js";
import { expandMergedLinearB } from "./math.js";

/** Module names loralib examples give their embeddings. */
const EMBEDDING_NAME = /(^|\.)(wte|embed_tokens|word_embeddings|tok_embeddings|embed_in)$/;

export interface ConversionReport {
  readonly resolved: ResolvedLoralib;
  /** PEFT rank and alpha written (k·r and k·alpha for MergedLinear). */
  readonly peftR: number;
  readonly peftAlpha: number;
  readonly scaling: number;
  readonly modules: number;
  readonly headTensors: readonly string[];
  /** Lines to print: what was assumed and why. */
  readonly lines: readonly string[];
}

export function convertLoralibToPeft(ckpt: LoralibCheckpoint, options: LoralibOptions = {}): { adapter: LoraAdapter; report: ConversionReport } {
  const res = resolveLoralibOptions(ckpt, options);
  const { r, alpha, enableLora } = res;
  const k = enableLora ? enableLora.filter(Boolean).length : 1;
  if (enableLora && k === 0) throw new AdapterError(`enable_lora [${enableLora.join(",")}] enables no block`);
  const modules = new Map<string, LoraModule>();
  // Embeddings keep rank r while fused modules become k·r: they get their own rank/alpha pattern entries.
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  const convLines: string[] = [];
  const linearShaped: string[] = [];
  for (const [name, { A, B }] of ckpt.modules) {
    const embedding = options.embeddings?.includes(name) ?? EMBEDDING_NAME.test(name);
    // A conv base weight (when the base is given) or ConvLoRA-shaped factors make this a loralib ConvLoRA.
    const baseShape = embedding ? undefined : options.baseWeightShape?.(name);
    const convK = embedding || (baseShape && baseShape.length < 3) ? undefined : loralibConvKernel(A, B, r);
    if ((baseShape && baseShape.length >= 3) || convK !== undefined) {
      const c = baseShape ? convertLoralibConvForBase(name, A, B, r, alpha, baseShape) : convertLoralibConv(name, A, B, r, alpha, convK!);
      modules.set(name, c.module);
      // The config's global r/alpha are k·r, k·alpha (k enabled MergedLinear blocks, else 1).
      if (c.rank !== k * r || c.alpha !== k * alpha) {
        rankPattern[`^${name.replace(/\./g, "\\.")}`] = c.rank;
        alphaPattern[`^${name.replace(/\./g, "\\.")}`] = c.alpha;
      }
      const what = baseShape ? `base weight [${baseShape.join(", ")}]` : `groups 1 assumed: no --base`;
      convLines.push(`${name}: loralib ConvLoRA (A [${A.shape.join(", ")}], B [${B.shape.join(", ")}], ${what}) → PEFT ${c.module.kind} LoRA of ${c.how}`);
      continue;
    }
    const kind = embedding ? "embedding" : res.fanInFanOut ? "conv1d" : "linear";
    // A 1×…×1 ConvLoRA saves lora.Linear's factor shapes; only the base (or a preset naming the model) tells them apart.
    if (kind === "linear" && !enableLora && !res.preset && !options.baseWeightShape) linearShaped.push(name);
    const kMod = embedding ? 1 : k;
    const aRows = A.shape[0]!;
    const [bRows, bR] = B.shape as [number, number];
    if (aRows !== kMod * r) {
      throw new AdapterError(`${ckpt.file}: ${name}.lora_A has ${aRows} rows but r=${r} with ${kMod} enabled block(s) needs ${kMod * r}; check --r / --enable-lora`, { code: "E_RANK" });
    }
    if (bR !== r) throw new AdapterError(`${ckpt.file}: ${name}.lora_B has shape [${B.shape.join(", ")}]; r=${r} needs ${r} columns`, { code: "E_RANK" });
    if (!enableLora || embedding) {
      modules.set(name, { kind, A, B });
      if (embedding && k !== 1) {
        rankPattern[`^${name.replace(/\./g, "\\.")}`] = r;
        alphaPattern[`^${name.replace(/\./g, "\\.")}`] = alpha;
      }
      continue;
    }
    if (bRows % k !== 0) throw new AdapterError(`${ckpt.file}: ${name}.lora_B rows ${bRows} are not divisible by ${k} enabled blocks`);
    const out = (bRows / k) * enableLora.length;
    const Bx = expandMergedLinearB(toFloat32(B), enableLora, out, r, name);
    const f32A: Tensor = A.dtype === "F32" ? A : { dtype: "F32", shape: A.shape, data: toFloat32(A) };
    modules.set(name, { kind, A: f32A, B: { dtype: "F32", shape: [out, k * r], data: Bx } });
  }
  const extraTensors = new Map<string, Tensor>();
  const headTensors: string[] = [];
  for (const [key, t] of ckpt.other) {
    if (res.headModules.some((h) => key.startsWith(`${h}.`))) {
      extraTensors.set(key, t);
      headTensors.push(key);
    } else {
      throw new AdapterError(`${ckpt.file}: tensor '${key}' is neither a LoRA factor nor part of a head module (${res.headModules.join(", ") || "none"}); pass a preset that saves it`);
    }
  }
  const peftR = k * r;
  const peftAlpha = k * alpha;
  const config = loraConfig({
    task_type: res.taskType,
    base_model_name_or_path: res.baseModel,
    r: peftR,
    lora_alpha: peftAlpha,
    // Every converted module must be a target, including embeddings the preset does not list.
    target_modules: [...new Set([...res.targets, ...[...modules.keys()].filter((n) => !res.targets.some((t) => n === t || n.endsWith(`.${t}`))).map((n) => n.split(".").pop()!)])],
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
    fan_in_fan_out: res.fanInFanOut,
    modules_to_save: res.headModules.length ? res.headModules : null,
    init_lora_weights: true,
    floatPaths: Number.isInteger(peftAlpha) ? [] : ["lora_alpha"],
  });
  const scaling = peftAlpha / peftR;
  const lines = [
    `preset: ${res.preset?.name ?? "(none)"} (${res.presetSource})${res.preset ? ` — ${res.preset.description}` : ""}`,
    `loralib: r=${r}, lora_alpha=${alpha}, scaling=${alpha / r}${enableLora ? `, enable_lora=[${enableLora.join(", ")}]` : ""}, fan_in_fan_out=${res.fanInFanOut}`,
    `PEFT: r=${peftR}, lora_alpha=${peftAlpha} (scaling ${scaling}), target_modules=[${res.targets.join(", ")}], ${modules.size} modules${enableLora ? " (fused MergedLinear blocks as one block-structured LoRA)" : ""}`,
    ...convLines,
    ...(headTensors.length ? [`modules_to_save: [${res.headModules.join(", ")}] (${headTensors.length} tensors), task_type ${res.taskType}`] : []),
    ...res.notes.map((n) => `note: ${n}`),
    ...(linearShaped.length ? [`note: ${linearShaped.join(", ")}: converted as Linear; a loralib 1×…×1 Conv1d/Conv2d/Conv3d (ConvLoRA) saves the same factor shapes, so if any of these is a conv, pass --base <base weights> to convert it as conv LoRA`] : []),
  ];
  return { adapter: { config, modules, extraTensors }, report: { resolved: res, peftR, peftAlpha, scaling, modules: modules.size, headTensors, lines } };
}
