/**
 * Merge an adapter into an HF base model and write the merged model as a base GGUF for llama.cpp in one step,
 * with no merged HF folder in between: each base tensor is read, merged as `mergeModel` merges it (DoRA,
 * modules_to_save copies, saved embedding layers, lora_B biases: what a GGUF LoRA adapter cannot carry), put under
 * llama.cpp's name with llama.cpp's Q/K row order, and streamed into the GGUF (memory: about one tensor). The
 * architecture and the tokenizer are checked before anything is merged; the file is written to a temp file and
 * renamed.
 */
import { statSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { AdapterError, LoraportError } from "../errors.js";
import { openSafetensorsModel } from "../formats/safetensors/index.js";
import { resolveModelPath } from "../hub/resolve-model.js";
import { assertOutputNotInput } from "../internal/output-guard.js";
import type { ProgressCallback } from "../progress.js";
import { castTo, isFloat, type DType, type Tensor } from "../tensor/index.js";
import type { LoraAdapter } from "./adapter.js";
import type { GgufOutType } from "./gguf-adapter.js";
import { ggufBaseMetadata, ggufDtype, planGgufBase, toGgufTensor } from "./gguf-base.js";
import { readHfHparams } from "./gguf-hparams.js";
import { writeGgufStreaming } from "./gguf-stream-writer.js";
import { baseCheckpointKeyMap } from "./checkpoint-keys.js";
import { mergeBias, mergeWeight } from "./math.js";
import { planMerge, type MergedModuleInfo, type MergeModelReport } from "./merge-model.js";
import { foldSavedLayers } from "./saved-layers.js";

export interface MergeToGgufOptions {
  /** Type of the GGUF's matrices (1-D norms and biases stay F32). Default: the base's matrices' dtype (F32 when mixed or not F32/F16/BF16). */
  readonly dtype?: GgufOutType;
  /** Refuse non-finite merged values (`NonFiniteError` naming the module). */
  readonly safe?: boolean;
  /** Replace an existing output file; without it an existing output is refused before any work. */
  readonly force?: boolean;
  readonly onProgress?: ProgressCallback;
}

/** What `mergeModel` reports of the merge itself (`merged`, `replaced`, `unused`, bytes), and the GGUF written. */
export interface MergeToGgufReport extends Pick<MergeModelReport, "merged" | "replaced" | "unused" | "bytesRead" | "bytesWritten"> {
  readonly out: string;
  /** `general.architecture` written (mistral is written as llama, as llama.cpp's converter does). */
  readonly architecture: string;
  readonly outtype: GgufOutType;
  /** GGUF tensors written. */
  readonly tensors: number;
  /** Notes on what GGUF does not represent (e.g. mistral's sliding window). */
  readonly notes: readonly string[];
}

const GGUF_DTYPES: ReadonlySet<DType> = new Set(["F32", "F16", "BF16"]);

/**
 * Merge `adapter` into the HF model folder (or Hub id) `basePath` and write a base GGUF at `outPath`
 * (architectures: `GGUF_MODEL_TYPES`; others are refused before anything is read but config.json).
 */
export async function mergeToGguf(basePath: string, adapter: LoraAdapter, outPath: string, options: MergeToGgufOptions = {}): Promise<MergeToGgufReport> {
  const base = await resolveModelPath(basePath, { onProgress: options.onProgress });
  if (!statSync(base).isDirectory()) throw new LoraportError("E_USAGE", `--base ${basePath}: merge --to gguf needs a Hugging Face model folder (config.json, safetensors weights, tokenizer.json), not a single file`);
  const h = await readHfHparams(base);
  const src = await openSafetensorsModel(base);
  try {
    assertOutputNotInput({ flag: "--out", path: outPath }, [{ flag: "--base", path: base }, ...src.shards.map((path) => ({ flag: "--base", path }))]);
    const existing = await stat(outPath).catch(() => undefined);
    if (existing?.isDirectory()) throw new LoraportError("E_OUTPUT_EXISTS", `--out ${outPath} is a folder; name the output .gguf file`);
    if (existing && !options.force) throw new LoraportError("E_OUTPUT_EXISTS", `--out ${outPath} already exists; pass --force to replace it, or choose another --out`);
    const outtype = options.dtype ?? defaultOuttype(src.names.map((n) => src.entry(n)!));
    const metadata = await ggufBaseMetadata(base, h, outtype);

    adapter = await foldSavedLayers(adapter, src);
    const plan = planMerge(src, adapter, await baseCheckpointKeyMap(base));
    const changed = new Set([...plan.weightOf.keys(), ...plan.biasOf.keys(), ...plan.replace.keys()]);
    // A merge that changes a tied lm_head gives the output its own tensor (PEFT's forward adapts the head only).
    const tensors = planGgufBase(h, src.names, base, changed.has("lm_head.weight"));
    const written = new Set(tensors.map((t) => t.key));
    const lost = [...changed].filter((k) => !written.has(k));
    if (lost.length) throw new AdapterError(`${base}: ${lost.join(", ")} changed by the adapter but not written to GGUF`);

    const byName = new Map(tensors.map((t) => [t.name, t]));
    const planned = tensors.map((t) => ({ name: t.name, dtype: ggufDtype(src.entry(t.key)!.shape.length, outtype), shape: src.entry(t.key)!.shape }));
    const merged: MergedModuleInfo[] = [];
    const safe = options.safe ? { safe: true } : {};
    let done = 0;
    let bytesRead = 0;
    let bytesWritten = 0;
    options.onProgress?.({ phase: "merge", done: 0, total: tensors.length, unit: "tensors" });
    await mkdir(dirname(resolve(outPath)), { recursive: true });
    await writeGgufStreaming(outPath, metadata, planned, async (name) => {
      const entry = byName.get(name)!;
      const key = entry.key;
      const t0 = await src.read(key);
      bytesRead += t0.data.byteLength;
      const w = plan.weightOf.get(key);
      const b = plan.biasOf.get(key);
      const rep = plan.replace.get(key);
      let t: Tensor;
      // Merged in F32 and rounded once, after the Q/K permutation (which is exact).
      if (w) {
        t = mergeWeight(t0, w.m, w.scaling, { module: w.module, dtype: "F32", ...safe });
        merged.push({ module: w.module, tensor: key, kind: w.m.kind, r: w.r, scaling: w.scaling, dora: w.m.magnitude !== undefined });
      } else if (b) {
        t = mergeBias(t0, b.m.bBias!, b.scaling, { module: b.module, dtype: "F32", ...safe });
      } else if (rep) {
        t = castTo(rep, "F32");
      } else {
        t = t0;
      }
      const out = toGgufTensor(t, entry, outtype);
      bytesWritten += out.data.byteLength;
      options.onProgress?.({ phase: "merge", done: ++done, total: tensors.length, unit: "tensors", message: key });
      return out;
    });
    return {
      out: outPath, architecture: h.arch.name, outtype, tensors: tensors.length, merged, replaced: [...plan.replace.keys()], unused: plan.unused,
      bytesRead, bytesWritten, notes: h.notes,
    };
  } finally {
    await src.close();
  }
}

/** The base's matrices' dtype when they share one GGUF writes (F32, F16, BF16), else F32. */
function defaultOuttype(entries: ReadonlyArray<{ dtype: DType; shape: readonly number[] }>): GgufOutType {
  const kinds = new Set(entries.filter((e) => e.shape.length > 1 && isFloat(e.dtype)).map((e) => e.dtype));
  const [only] = kinds;
  return kinds.size === 1 && only !== undefined && GGUF_DTYPES.has(only) ? (only as GgufOutType) : "F32";
}
