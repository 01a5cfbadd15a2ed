/**
 * Merge an adapter into a base model's safetensors weights (one file, a folder, or a sharded folder), a
 * tensor at a time: memory stays bounded by the largest tensor. Output keeps the base's tensor names and
 * sharding. A folder base gives a complete Hugging Face folder (weights, index, config, tokenizer and every other
 * non-weight file) that transformers, vLLM and `loraport export` load as they are; it is built in a temp folder
 * beside its destination and renamed into place. A single .safetensors base gives a single file, written
 * atomically. The base is only read, and no output may be, lie inside or hold an input.
 */
import { existsSync, statSync } from "node:fs";
import { copyFile, mkdir, open, readdir, rename, rm, rmdir, stat, writeFile, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { AdapterError, FormatError, LoraportError, ShapeMismatchError, UnsupportedFeatureError } from "../errors.js";
import { IO_CHUNK } from "../formats/atomic-file.js";
import { openSafetensorsModel, type ModelSource } from "../formats/safetensors/index.js";
import { resolveModelPath } from "../hub/resolve-model.js";
import { assertOutputNotInput } from "../internal/output-guard.js";
import type { ProgressCallback } from "../progress.js";
import { castTo, fromBytes, isFloat, itemsize, numel, type DType, type Tensor } from "../tensor/index.js";
import { baseWeightShape, type LoraAdapter, type LoraModule } from "./adapter.js";
import { baseCheckpointKeyMap, type CheckpointKeyMap } from "./checkpoint-keys.js";
import { resolveModule } from "./config.js";
import { DORA_NORMS_IN_FOLDER, doraFingerprint, doraNormsPath, readDoraNorms, tensorDigest, writeDoraNorms, type DoraNormsRecord, type DoraWeight } from "./dora-norms.js";
import { mergeBias, mergeWeight } from "./math.js";
import { foldSavedLayers } from "./saved-layers.js";
import { writeSafetensorsStreaming, type PlannedTensor } from "./stream-writer.js";

export interface MergeModelOptions {
  /** Output dtype of floating tensors (default: each tensor keeps the base's dtype). */
  readonly dtype?: "F32" | "F16" | "BF16";
  /** Refuse non-finite merged values (`NonFiniteError` naming the module). */
  readonly safe?: boolean;
  /**
   * Subtract the adapter from weights it was merged into (W = W' − ΔW), as PEFT's `unmerge_adapter`. DoRA modules
   * unmerge with the norms `mergeModel` recorded beside the merged weights (dora-norms.ts), refused without them;
   * `modules_to_save` copies are refused (the base's own copy is gone from merged weights).
   */
  readonly unmerge?: boolean;
  /** Replace an existing output (a file, or a non-empty folder); without it an existing output is refused before any work. */
  readonly force?: boolean;
  readonly onProgress?: ProgressCallback;
}

export interface MergedModuleInfo {
  readonly module: string;
  readonly tensor: string;
  readonly kind: LoraModule["kind"];
  readonly r: number;
  readonly scaling: number;
  readonly dora: boolean;
}

export interface MergeModelReport {
  readonly out: string;
  readonly files: readonly string[];
  readonly tensors: number;
  readonly merged: readonly MergedModuleInfo[];
  /** Base tensors replaced by the adapter's saved-whole copies (modules_to_save heads, trained biases). */
  readonly replaced: readonly string[];
  /** Adapter tensors that fit no base tensor (reported, not applied). */
  readonly unused: readonly string[];
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** Folder output: the base folder's non-weight files copied with the weights (paths relative to the folder). */
  readonly copied: readonly string[];
  /** Folder output: other weight files of the base folder (e.g. pytorch_model.bin) not merged, so not copied. */
  readonly leftOut: readonly string[];
  /**
   * The output's DoRA norms record, which a DoRA `unmerge` needs (dora-norms.ts; also in `files`): written by a DoRA merge,
   * or carried from the base by a run without DoRA modules.
   */
  readonly doraNorms?: string;
}

/** Which base tensors a merge changes and how (also streamed into a GGUF by `mergeToGguf`). @internal */
export interface MergePlan {
  /** base tensor name → module merged into it. */
  readonly weightOf: Map<string, { module: string; m: LoraModule; scaling: number; r: number }>;
  readonly biasOf: Map<string, { module: string; m: LoraModule; scaling: number }>;
  readonly replace: Map<string, Tensor>;
  readonly unused: string[];
}

/**
 * The base's tensors by the names transformers loads them under, where those differ from the checkpoint keys
 * (checkpoint-keys.ts): loaded name → checkpoint key. Empty for most architectures.
 */
export function loadedNames(src: ModelSource, keys: CheckpointKeyMap | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!keys) return out;
  for (const key of src.names) {
    const loaded = keys.loadedName(key);
    if (loaded !== key && !src.entry(loaded)) out.set(loaded, key);
  }
  return out;
}

/**
 * Base tensor name for an adapter key: exact, or with leading components stripped (HF files differ in prefixes), looked up
 * among the checkpoint keys and then among the names transformers loads them under (`loaded`, from `loadedNames`).
 */
function findBaseName(src: ModelSource, name: string, loaded: ReadonlyMap<string, string> = new Map()): string | undefined {
  const find = (n: string): string | undefined => (src.entry(n) ? n : loaded.get(n));
  const exact = find(name);
  if (exact) return exact;
  const parts = name.split(".");
  for (let i = 1; i < parts.length - 1; i++) {
    const hit = find(parts.slice(i).join("."));
    if (hit) return hit;
  }
  return undefined;
}

/** What a missing base tensor is called in the checkpoint, when transformers' conversion mapping renames it on save. */
function checkpointKeyNote(name: string, keys: CheckpointKeyMap | undefined): string {
  const saved = keys?.savedName(name);
  return saved !== undefined && saved !== name ? ` nor '${saved}' (its checkpoint key under transformers' ${keys!.modelType} conversion mapping)` : "";
}

/** Settle Conv1D vs Linear from the base weight's shape when the config's `fan_in_fan_out` is wrong for it (PEFT corrects it per layer too). */
function fitKind(m: LoraModule, shape: readonly number[]): LoraModule {
  const same = (s: readonly number[]) => s.length === shape.length && s.every((d, i) => d === shape[i]);
  if (same(baseWeightShape(m))) return m;
  if (m.kind === "conv1d" || m.kind === "linear") {
    const other: LoraModule = { ...m, kind: m.kind === "conv1d" ? "linear" : "conv1d" };
    if (same(baseWeightShape(other))) return other;
  }
  return m;
}

/**
 * `keys`: the base's checkpoint renaming (from its config's `model_type`, `checkpointKeyMap`); adapter modules named
 * as the loaded model names them are then found under the base's checkpoint keys, which the output keeps.
 */
export function planMerge(src: ModelSource, adapter: LoraAdapter, keys?: CheckpointKeyMap): MergePlan {
  const weightOf: MergePlan["weightOf"] = new Map();
  const biasOf: MergePlan["biasOf"] = new Map();
  const loaded = loadedNames(src, keys);
  for (const [module, m0] of adapter.modules) {
    const wName = findBaseName(src, `${module}.weight`, loaded);
    if (!wName) throw new ShapeMismatchError(module, `the base has no tensor '${module}.weight'${checkpointKeyNote(`${module}.weight`, keys)} (nor a suffix of it) for this adapted module`, baseWeightShape(m0));
    const entry = src.entry(wName)!;
    const m = fitKind(m0, entry.shape);
    const want = baseWeightShape(m);
    if (want.length !== entry.shape.length || want.some((d, i) => d !== entry.shape[i])) {
      throw new ShapeMismatchError(module, `base weight '${wName}' has shape [${entry.shape.join(", ")}] but the adapter (${m.kind}, lora_A [${m.A.shape.join(", ")}], lora_B [${m.B.shape.join(", ")}]) needs [${want.join(", ")}]`, want, entry.shape);
    }
    if (!isFloat(entry.dtype)) throw new AdapterError(`${module}: base weight '${wName}' is ${entry.dtype}; only float weights can be merged`);
    const { scaling, r } = resolveModule(adapter.config, module);
    weightOf.set(wName, { module, m, scaling, r });
    if (m.bBias) {
      const bName = findBaseName(src, `${module}.bias`, loaded);
      if (!bName) throw new ShapeMismatchError(module, `lora_B.bias needs a base bias '${module}.bias'${checkpointKeyNote(`${module}.bias`, keys)}, and the base has none`);
      biasOf.set(bName, { module, m, scaling });
    }
  }
  const replace = new Map<string, Tensor>();
  const unused: string[] = [];
  for (const [key, t] of adapter.extraTensors) {
    // `X.base_layer.bias` / embedding copies are saved under the wrapped name; the base knows them as `X.bias`.
    const name = findBaseName(src, key.replace(".base_layer.", "."), loaded) ?? findBaseName(src, key, loaded);
    const entry = name === undefined ? undefined : src.entry(name);
    if (!name || !entry) {
      unused.push(key);
      continue;
    }
    if (numel(entry.shape) !== numel(t.shape)) {
      throw new ShapeMismatchError(key, `saved tensor has shape [${t.shape.join(", ")}] but base '${name}' has [${entry.shape.join(", ")}]`, t.shape, entry.shape);
    }
    if (weightOf.has(name)) throw new AdapterError(`${key}: base tensor '${name}' is both adapted and saved whole`);
    replace.set(name, { ...t, shape: entry.shape });
  }
  return { weightOf, biasOf, replace, unused };
}

/**
 * Merge `adapter` into the model at `basePath`, writing `outPath`: a complete model folder for a folder base (or a
 * single weights file when the base has one and `outPath` ends in `.safetensors`), a file for a `.safetensors` base.
 */
export async function mergeModel(basePath: string, adapter: LoraAdapter, outPath: string, options: MergeModelOptions = {}): Promise<MergeModelReport> {
  const base = await resolveModelPath(basePath, { onProgress: options.onProgress });
  const src = await openSafetensorsModel(base);
  const handles = new FileHandles();
  try {
    const target = outputTarget(src, base, outPath);
    assertOutputNotInput({ flag: "--out", path: target.path }, [{ flag: "--base", path: target.baseDir ?? base }, ...src.shards.map((path) => ({ flag: "--base", path }))]);
    await refuseExisting(target.path, target.kind, options.force === true);
    // Saved embedding layers and trainable tokens become whole-tensor replacements (PEFT loads them into the base first).
    adapter = await foldSavedLayers(adapter, src);
    const plan = planMerge(src, adapter, await baseCheckpointKeyMap(target.baseDir ?? dirname(resolve(base))));
    if (options.unmerge && plan.replace.size) {
      throw new UnsupportedFeatureError("modules_to_save", `unmerge: ${[...plan.replace.keys()].join(", ")} ${plan.replace.size === 1 ? "is a copy" : "are copies"} saved whole by the adapter; merged weights no longer hold the base's own, so they cannot be unmerged`);
    }
    // DoRA: a merge records the norms it divides by; an unmerge needs that record (dora-norms.ts).
    const doraWeights: DoraWeight[] = [...plan.weightOf].filter(([, w]) => w.m.magnitude !== undefined).map(([tensor, w]) => ({ tensor, ...w }));
    const baseRecord = doraNormsPath(target.baseDir ? "folder" : "file", target.baseDir ?? src.shards[0]!);
    const record: DoraNormsRecord | undefined = options.unmerge && doraWeights.length ? await readDoraNorms(baseRecord, doraWeights) : undefined;
    const normsOut = new Map<string, { norms: Float32Array; digest: string }>();
    const sign = options.unmerge ? { unmerge: true } : {};
    const outDtype = (d: DType): DType => (options.dtype && isFloat(d) ? options.dtype : d);
    const total = src.names.length;
    let done = 0;
    let bytesRead = 0;
    let bytesWritten = 0;
    const merged: MergedModuleInfo[] = [];
    const pool = new BufferPool();
    const reader = new PooledReader(src, pool, handles);
    // One read ahead: the next tensor's bytes arrive while this one is computed and written.
    const ahead = new Map<string, Promise<Tensor>>();
    const prefetch = (name: string): void => {
      if (ahead.has(name)) return;
      const p = reader.read(name);
      p.catch(() => {}); // a failed read surfaces when produce() awaits it, not as an unhandled rejection
      ahead.set(name, p);
    };
    // Buffers are reused instead of allocated per tensor (fresh allocations page-fault). A buffer goes back to
    // the pool when nothing needs it any more: a read buffer once merged from (or once written, when the
    // tensor passes through unchanged), an output buffer once written.
    const held = new Map<string, ArrayBuffer[]>();
    const hold = (name: string, buf: ArrayBuffer): void => {
      held.set(name, [...(held.get(name) ?? []), buf]);
    };
    const written = (name: string): void => {
      for (const buf of held.get(name) ?? []) pool.give(buf);
      held.delete(name);
    };
    const produce = async (name: string): Promise<Tensor> => {
      const pending = ahead.get(name);
      ahead.delete(name);
      const base = await (pending ?? reader.read(name));
      const readBuf = base.data.buffer as ArrayBuffer;
      let outBuf: ArrayBuffer | undefined;
      const output = (bytes: number): ArrayBuffer => (outBuf = pool.take(bytes));
      bytesRead += base.data.byteLength;
      const dtype = outDtype(base.dtype);
      let t: Tensor;
      const w = plan.weightOf.get(name);
      const b = plan.biasOf.get(name);
      const rep = plan.replace.get(name);
      if (w) {
        let norms: Float32Array | undefined;
        const dora = !w.m.magnitude ? {} : record ? { doraNorms: record.normsFor(name, base, w.module) } : { onDoraNorms: (n: Float32Array) => (norms = n) };
        t = mergeWeight(base, w.m, w.scaling, { module: w.module, dtype, output, ...sign, ...dora, ...(options.safe ? { safe: true } : {}) });
        if (norms) normsOut.set(name, { norms, digest: tensorDigest(t) });
        merged.push({ module: w.module, tensor: name, kind: w.m.kind, r: w.r, scaling: w.scaling, dora: w.m.magnitude !== undefined });
      } else if (b) {
        t = mergeBias(base, b.m.bBias!, b.scaling, { module: b.module, dtype, ...sign, ...(options.safe ? { safe: true } : {}) });
      } else if (rep) {
        t = castTo(rep, dtype);
      } else {
        t = castTo(base, dtype);
      }
      // The read buffer is free now unless it is what gets written; the output buffer is held until written.
      if (t.data.buffer === readBuf) hold(name, readBuf);
      else pool.give(readBuf);
      if (outBuf) hold(name, outBuf);
      bytesWritten += t.data.byteLength;
      done++;
      options.onProgress?.({ phase: "merge", done, total, unit: "tensors", message: name });
      return t;
    };
    const planOf = (names: readonly string[]): PlannedTensor[] =>
      names.map((n) => {
        const e = src.entry(n)!;
        return { name: n, dtype: outDtype(e.dtype), shape: e.shape };
      });
    options.onProgress?.({ phase: "merge", done: 0, total, unit: "tensors" });
    const files: string[] = [];
    let companions: Companions = { copied: [], leftOut: [] };
    // Checked before anything is renamed into place: a folder output never appears with modules missing.
    const checkAllMerged = (): void => {
      const adapted = new Set(merged.map((m) => m.module));
      const missing = [...adapter.modules.keys()].filter((m) => !adapted.has(m));
      if (missing.length) throw new AdapterError(`modules not merged: ${missing.join(", ")}`);
    };
    const normsFile = doraNormsPath(target.kind, target.path);
    // Written with the weights (into the temp folder, for a folder), so an output never lacks the record its merge made.
    const recordNorms = async (path: string): Promise<void> => {
      if (!normsOut.size) return;
      await mkdir(dirname(path), { recursive: true });
      await writeDoraNorms(path, doraFingerprint(doraWeights), normsOut);
      files.push(normsFile);
    };
    // A merge or unmerge without DoRA modules carries the base's record along (a LoRA merged on top of a DoRA merge and
    // unmerged again leaves it unmergeable); the record's digests refuse it later if this run changed its weights.
    const carryRecord = async (path: string): Promise<void> => {
      if (doraWeights.length || !existsSync(baseRecord)) return;
      await mkdir(dirname(path), { recursive: true });
      await copyFile(baseRecord, `${path}.tmp`);
      await rename(`${path}.tmp`, path);
      files.push(normsFile);
    };
    if (target.kind === "file") {
      await mkdir(dirname(resolve(target.path)), { recursive: true });
      await writeSafetensorsStreaming(target.path, planOf(src.names), produce, src.metadata, prefetch, written);
      files.push(target.path);
      checkAllMerged();
      // A record left beside a replaced file by an earlier DoRA merge no longer describes it.
      if (!normsOut.size) await rm(normsFile, { force: true });
      await recordNorms(normsFile);
      await carryRecord(normsFile);
    } else {
      companions = await writeFolderOutput(src, target.baseDir!, target.path, options.force === true, planOf, produce, outDtype, files, prefetch, written, async (tmp) => {
        checkAllMerged();
        await recordNorms(join(tmp, DORA_NORMS_IN_FOLDER));
        await carryRecord(join(tmp, DORA_NORMS_IN_FOLDER));
      });
    }
    return { out: target.path, files, tensors: total, merged, replaced: [...plan.replace.keys()], unused: plan.unused, bytesRead, bytesWritten, ...companions, ...(files.includes(normsFile) ? { doraNorms: normsFile } : {}) };
  } finally {
    await handles.close();
    await src.close();
  }
}

interface OutputTarget {
  readonly kind: "file" | "folder";
  /** The file or folder that will be written. */
  readonly path: string;
  /** The base's folder, for a folder (or index) base. */
  readonly baseDir: string | undefined;
}

/** What gets written where: see `mergeModel`. */
function outputTarget(src: ModelSource, basePath: string, outPath: string): OutputTarget {
  const folderBase = statSync(basePath).isDirectory() || basePath.endsWith(".json");
  const sharded = src.shards.length > 1 || src.index !== undefined;
  const baseDir = folderBase ? (statSync(basePath).isDirectory() ? basePath : dirname(basePath)) : undefined;
  if (baseDir && !(outPath.endsWith(".safetensors") && !sharded)) {
    if (outPath.endsWith(".safetensors")) throw new LoraportError("E_USAGE", `--out ${outPath}: a sharded base gives a model folder (shards + index); name a folder, not a .safetensors file`);
    return { kind: "folder", path: outPath, baseDir };
  }
  // A single weights file; into an existing folder it goes under the base file's name.
  const isDir = existsSync(outPath) && statSync(outPath).isDirectory();
  return { kind: "file", path: isDir ? join(outPath, basename(src.shards[0]!)) : outPath, baseDir: undefined };
}

/** An existing output is replaced only with `force` (an empty folder counts as free). Refused before any work is done. */
async function refuseExisting(path: string, kind: "file" | "folder", force: boolean): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (!st || force) return;
  if (st.isDirectory() && (await readdir(path)).length === 0) return;
  if (kind === "file" && st.isDirectory()) throw new LoraportError("E_OUTPUT_EXISTS", `--out ${path} is a folder; name the output file`);
  throw new LoraportError("E_OUTPUT_EXISTS", `--out ${path} already exists${st.isDirectory() ? " and is not empty" : ""}; pass --force to replace it, or choose another --out`);
}

/** Weight files of other formats in a model folder: never merged, so never copied next to the merged weights (a loader could pick them). */
const OTHER_WEIGHTS = /(\.(bin|pt|pth|ckpt|h5|msgpack|gguf|onnx|onnx_data|safetensors)$)|(\.(bin|safetensors)\.index\.json$)/;
/** `training_args.bin` and friends are pickles of settings, not weights; only weight-named .bin files are left out. */
const WEIGHT_BIN = /(^|\/)(pytorch_model|model|tf_model|flax_model|consolidated)[^/]*\.bin(\.index\.json)?$/;

interface Companions {
  readonly copied: string[];
  readonly leftOut: string[];
}

function isOtherWeights(rel: string): boolean {
  if (!OTHER_WEIGHTS.test(rel)) return false;
  return !/\.bin(\.index\.json)?$/.test(rel) || WEIGHT_BIN.test(rel);
}

/** Copy the base folder's non-weight files (config, generation config, tokenizer, README, subfolders) into `dest`. */
async function copyCompanions(baseDir: string, dest: string, skip: ReadonlySet<string>): Promise<Companions> {
  const copied: string[] = [];
  const leftOut: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      if (name.startsWith(".")) continue; // .cache/, .gitattributes: download bookkeeping
      const from = join(dir, name);
      const rel = relative(baseDir, from);
      // A DoRA norms record describes the merge that wrote it, never the output of this one.
      if (skip.has(rel) || rel === DORA_NORMS_IN_FOLDER) continue;
      const st = await stat(from).catch(() => undefined); // follows symlinks: HF cache snapshots link to blobs
      if (!st) continue;
      if (st.isDirectory()) {
        if (depth < 4) {
          await mkdir(join(dest, rel), { recursive: true });
          await walk(from, depth + 1);
        }
      } else if (st.isFile()) {
        if (isOtherWeights(rel)) leftOut.push(rel);
        else {
          await copyFile(from, join(dest, rel));
          copied.push(rel);
        }
      }
    }
  };
  await walk(baseDir, 0);
  await rmdir(join(dest, dirname(DORA_NORMS_IN_FOLDER))).catch(() => {}); // the record's folder, if the walk left it empty
  return { copied, leftOut };
}

async function writeFolderOutput(
  src: ModelSource,
  baseDir: string,
  outPath: string,
  force: boolean,
  planOf: (names: readonly string[]) => PlannedTensor[],
  produce: (name: string) => Promise<Tensor>,
  outDtype: (d: DType) => DType,
  files: string[],
  prefetch: (name: string) => void,
  written: (name: string) => void,
  beforeInstall: (tmp: string) => Promise<void>,
): Promise<Companions> {
  const parent = dirname(resolve(outPath));
  await mkdir(parent, { recursive: true });
  const tmp = join(parent, `.${basename(resolve(outPath))}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  await mkdir(tmp);
  try {
    const byShard = new Map<string, string[]>();
    for (const n of src.names) {
      const file = relative(baseDir, src.entry(n)!.file);
      byShard.set(file, [...(byShard.get(file) ?? []), n]);
    }
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    for (const [file, names] of byShard) {
      await mkdir(dirname(join(tmp, file)), { recursive: true });
      await writeSafetensorsStreaming(join(tmp, file), planOf(names), produce, src.metadata, prefetch, written);
      for (const n of names) {
        weightMap[n] = file;
        const e = src.entry(n)!;
        totalSize += numel(e.shape) * itemsize(outDtype(e.dtype));
      }
      files.push(join(outPath, file));
    }
    const skip = new Set(byShard.keys());
    if (src.index !== undefined || byShard.size > 1) {
      const index = (src.index ?? {}) as { metadata?: Record<string, unknown> };
      const indexName = (await readdir(baseDir)).find((n) => n.endsWith(".safetensors.index.json")) ?? "model.safetensors.index.json";
      const sortedMap = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      await writeFile(join(tmp, indexName), `${JSON.stringify({ metadata: { ...(index.metadata ?? {}), total_size: totalSize }, weight_map: sortedMap }, null, 2)}\n`);
      files.push(join(outPath, indexName));
      skip.add(indexName);
    }
    const companions = await copyCompanions(baseDir, tmp, skip);
    for (const rel of companions.copied) files.push(join(outPath, rel));
    await beforeInstall(tmp);
    await installFolder(tmp, outPath, force);
    return companions;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Rename the finished temp folder onto `out`; an existing `out` (allowed by `force`) is moved aside first and removed after. */
async function installFolder(tmp: string, out: string, force: boolean): Promise<void> {
  const st = await stat(out).catch(() => undefined);
  if (!st) return rename(tmp, out);
  if (st.isDirectory() && (await readdir(out)).length === 0) {
    await rmdir(out);
    return rename(tmp, out);
  }
  if (!force) throw new LoraportError("E_OUTPUT_EXISTS", `--out ${out} appeared while merging; pass --force to replace it`);
  const old = `${tmp}.old`;
  await rename(out, old);
  try {
    await rename(tmp, out);
  } catch (err) {
    await rename(old, out).catch(() => {});
    throw err;
  }
  await rm(old, { recursive: true, force: true });
}

/** Reusable ArrayBuffers: `take` hands out the smallest free one that fits (or a new one), `give` returns it. */
class BufferPool {
  private readonly free: ArrayBuffer[] = [];

  take(bytes: number): ArrayBuffer {
    let best = -1;
    for (const [i, b] of this.free.entries()) {
      if (b.byteLength >= bytes && (best < 0 || b.byteLength < this.free[best]!.byteLength)) best = i;
    }
    if (best < 0) return new ArrayBuffer(bytes);
    return this.free.splice(best, 1)[0]!;
  }

  give(buf: ArrayBuffer): void {
    this.free.push(buf);
    // Keep a handful; the streaming order never needs more than a few at once.
    if (this.free.length > 6) {
      this.free.sort((a, b) => a.byteLength - b.byteLength);
      this.free.shift();
    }
  }
}

/** One read handle per shard file, opened on first use. */
class FileHandles {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  get(file: string): Promise<FileHandle> {
    let fh = this.handles.get(file);
    if (!fh) {
      fh = open(file, "r");
      fh.catch(() => {});
      this.handles.set(file, fh);
    }
    return fh;
  }

  async close(): Promise<void> {
    for (const fh of this.handles.values()) await (await fh.catch(() => undefined))?.close();
  }
}

/** Tensor bytes read at the offsets the safetensors reader validated, into pooled buffers. */
class PooledReader {
  constructor(
    private readonly src: ModelSource,
    private readonly pool: BufferPool,
    private readonly handles: FileHandles,
  ) {}

  async read(name: string): Promise<Tensor> {
    const e = this.src.entry(name);
    if (!e) return this.src.read(name);
    const buf = this.pool.take(e.byteLength);
    const bytes = new Uint8Array(buf, 0, e.byteLength);
    const h = await this.handles.get(e.file);
    let done = 0;
    while (done < e.byteLength) {
      const { bytesRead } = await h.read(bytes, done, Math.min(IO_CHUNK, e.byteLength - done), e.byteOffset + done);
      if (bytesRead === 0) throw new FormatError(e.file, `file ended while reading tensor '${name}'`);
      done += bytesRead;
    }
    return fromBytes(e.dtype, e.shape, bytes);
  }
}
