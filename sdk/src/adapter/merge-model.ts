/**
 * Merge an adapter into a base model's safetensors weights (one file, a folder, or a sharded folder), a
 * tensor at a time: memory stays bounded by the largest tensor. Output keeps the base's tensor names and
 * sharding; each file is written atomically, a sharded output folder is built beside its destination and
 * renamed into place. The base is only read.
 */
import { existsSync, statSync } from "node:fs";
import { copyFile, mkdir, open, readdir, rename, rm, rmdir, writeFile, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { AdapterError, FormatError, ShapeMismatchError } from "../errors.js";
import { IO_CHUNK } from "../formats/atomic-file.js";
import { openSafetensorsModel, type ModelSource } from "../formats/safetensors/index.js";
import type { ProgressCallback } from "../progress.js";
import { castTo, fromBytes, isFloat, itemsize, numel, type DType, type Tensor } from "../tensor/index.js";
import { baseWeightShape, type LoraAdapter, type LoraModule } from "./adapter.js";
import { resolveModule } from "./config.js";
import { mergeBias, mergeWeight } from "./math.js";
import { writeSafetensorsStreaming, type PlannedTensor } from "./stream-writer.js";

export interface MergeModelOptions {
  /** Output dtype of floating tensors (default: each tensor keeps the base's dtype). */
  readonly dtype?: "F32" | "F16" | "BF16";
  /** Refuse non-finite merged values (`NonFiniteError` naming the module). */
  readonly safe?: boolean;
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
}

interface Plan {
  /** base tensor name → module merged into it. */
  readonly weightOf: Map<string, { module: string; m: LoraModule; scaling: number; r: number }>;
  readonly biasOf: Map<string, { module: string; m: LoraModule; scaling: number }>;
  readonly replace: Map<string, Tensor>;
  readonly unused: string[];
}

/** Base tensor name for an adapter key: exact, or with leading components stripped (HF files differ in prefixes). */
function findBaseName(src: ModelSource, name: string): string | undefined {
  if (src.entry(name)) return name;
  const parts = name.split(".");
  for (let i = 1; i < parts.length - 1; i++) {
    const cand = parts.slice(i).join(".");
    if (src.entry(cand)) return cand;
  }
  return undefined;
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

function planMerge(src: ModelSource, adapter: LoraAdapter): Plan {
  const weightOf: Plan["weightOf"] = new Map();
  const biasOf: Plan["biasOf"] = new Map();
  for (const [module, m0] of adapter.modules) {
    const wName = findBaseName(src, `${module}.weight`);
    if (!wName) throw new ShapeMismatchError(module, `the base has no tensor '${module}.weight' (nor a suffix of it) for this adapted module`, baseWeightShape(m0));
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
      const bName = findBaseName(src, `${module}.bias`);
      if (!bName) throw new ShapeMismatchError(module, `lora_B.bias needs a base bias '${module}.bias', and the base has none`);
      biasOf.set(bName, { module, m, scaling });
    }
  }
  const replace = new Map<string, Tensor>();
  const unused: string[] = [];
  for (const [key, t] of adapter.extraTensors) {
    // `X.base_layer.bias` / embedding copies are saved under the wrapped name; the base knows them as `X.bias`.
    const name = findBaseName(src, key.replace(".base_layer.", ".")) ?? findBaseName(src, key);
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

/** Merge `adapter` into the model at `basePath`, writing `outPath` (a file for a single-file base, else a folder). */
export async function mergeModel(basePath: string, adapter: LoraAdapter, outPath: string, options: MergeModelOptions = {}): Promise<MergeModelReport> {
  const src = await openSafetensorsModel(basePath);
  const reader = new PooledReader(src);
  try {
    const plan = planMerge(src, adapter);
    const outDtype = (d: DType): DType => (options.dtype && isFloat(d) ? options.dtype : d);
    const total = src.names.length;
    let done = 0;
    let bytesRead = 0;
    let bytesWritten = 0;
    const merged: MergedModuleInfo[] = [];
    // One read ahead: the next tensor's bytes arrive while this one is computed and written.
    const ahead = new Map<string, Promise<Tensor>>();
    const prefetch = (name: string): void => {
      if (ahead.has(name)) return;
      const p = reader.read(name);
      p.catch(() => {}); // a failed read surfaces when produce() awaits it, not as an unhandled rejection
      ahead.set(name, p);
    };
    // Merged tensors go into two alternating buffers: the writer finishes tensor i before tensor i+2 is made,
    // so reusing buffer i%2 is safe, and the kernel never waits on fresh (page-faulting) allocations.
    const ring: ArrayBuffer[] = [new ArrayBuffer(0), new ArrayBuffer(0)];
    let turn = 0;
    const output = (bytes: number): ArrayBuffer => {
      turn ^= 1;
      if (ring[turn]!.byteLength < bytes) ring[turn] = new ArrayBuffer(bytes);
      return ring[turn]!;
    };
    const produce = async (name: string): Promise<Tensor> => {
      const pending = ahead.get(name);
      ahead.delete(name);
      const base = await (pending ?? reader.read(name));
      bytesRead += base.data.byteLength;
      const dtype = outDtype(base.dtype);
      let t: Tensor;
      const w = plan.weightOf.get(name);
      const b = plan.biasOf.get(name);
      const rep = plan.replace.get(name);
      if (w) {
        t = mergeWeight(base, w.m, w.scaling, { module: w.module, dtype, output, ...(options.safe ? { safe: true } : {}) });
        merged.push({ module: w.module, tensor: name, kind: w.m.kind, r: w.r, scaling: w.scaling, dora: w.m.magnitude !== undefined });
      } else if (b) {
        t = mergeBias(base, b.m.bBias!, b.scaling, { module: b.module, dtype, ...(options.safe ? { safe: true } : {}) });
      } else if (rep) {
        t = castTo(rep, dtype);
      } else {
        t = castTo(base, dtype);
      }
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
    const sharded = src.shards.length > 1 || src.index !== undefined;
    if (!sharded) {
      const out = existsSync(outPath) && statSync(outPath).isDirectory() ? join(outPath, "model.safetensors") : outPath;
      if (resolve(out) === resolve(src.shards[0]!)) throw new AdapterError(`--out ${out} is the base file; the base is never overwritten`);
      await mkdir(dirname(resolve(out)), { recursive: true });
      await writeSafetensorsStreaming(out, planOf(src.names), produce, src.metadata, prefetch);
      files.push(out);
    } else {
      await writeShardedOutput(src, basePath, outPath, planOf, produce, outDtype, files, prefetch);
    }
    const adapted = new Set(merged.map((m) => m.module));
    const missing = [...adapter.modules.keys()].filter((m) => !adapted.has(m));
    if (missing.length) throw new AdapterError(`modules not merged: ${missing.join(", ")}`);
    return { out: outPath, files, tensors: total, merged, replaced: [...plan.replace.keys()], unused: plan.unused, bytesRead, bytesWritten };
  } finally {
    await reader.close();
    await src.close();
  }
}

/**
 * Tensor bytes read (at the offsets the safetensors reader validated) into three rotating buffers instead of a
 * fresh allocation per tensor. Three suffice for the streaming order: tensor i may still be being written
 * while i+1 is computed and i+2 is read ahead; by the time i+3 is read, tensor i's write has completed.
 */
class PooledReader {
  private readonly ring: ArrayBuffer[] = [new ArrayBuffer(0), new ArrayBuffer(0), new ArrayBuffer(0)];
  private turn = 0;
  private readonly handles = new Map<string, Promise<FileHandle>>();

  constructor(private readonly src: ModelSource) {}

  async read(name: string): Promise<Tensor> {
    const e = this.src.entry(name);
    if (!e) return this.src.read(name);
    this.turn = (this.turn + 1) % 3;
    if (this.ring[this.turn]!.byteLength < e.byteLength) this.ring[this.turn] = new ArrayBuffer(e.byteLength);
    const bytes = new Uint8Array(this.ring[this.turn]!, 0, e.byteLength);
    let fh = this.handles.get(e.file);
    if (!fh) {
      fh = open(e.file, "r");
      this.handles.set(e.file, fh);
    }
    const h = await fh;
    let done = 0;
    while (done < e.byteLength) {
      const { bytesRead } = await h.read(bytes, done, Math.min(IO_CHUNK, e.byteLength - done), e.byteOffset + done);
      if (bytesRead === 0) throw new FormatError(e.file, `file ended while reading tensor '${name}'`);
      done += bytesRead;
    }
    return fromBytes(e.dtype, e.shape, bytes);
  }

  async close(): Promise<void> {
    for (const fh of this.handles.values()) await (await fh).close();
  }
}

async function writeShardedOutput(
  src: ModelSource,
  basePath: string,
  outPath: string,
  planOf: (names: readonly string[]) => PlannedTensor[],
  produce: (name: string) => Promise<Tensor>,
  outDtype: (d: DType) => DType,
  files: string[],
  prefetch: (name: string) => void,
): Promise<void> {
  const baseDir = statSync(basePath).isDirectory() ? basePath : dirname(basePath);
  if (resolve(outPath) === resolve(baseDir)) throw new AdapterError(`--out ${outPath} is the base folder; the base is never overwritten`);
  if (existsSync(outPath) && (!statSync(outPath).isDirectory() || (await readdir(outPath)).length > 0)) {
    throw new AdapterError(`--out ${outPath} exists and is not an empty folder; a sharded merge writes a new folder`);
  }
  const parent = dirname(resolve(outPath));
  await mkdir(parent, { recursive: true });
  const tmp = join(parent, `.${basename(outPath)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  await mkdir(tmp);
  try {
    const byShard = new Map<string, string[]>();
    for (const n of src.names) {
      const file = basename(src.entry(n)!.file);
      byShard.set(file, [...(byShard.get(file) ?? []), n]);
    }
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    for (const [file, names] of byShard) {
      await writeSafetensorsStreaming(join(tmp, file), planOf(names), produce, src.metadata, prefetch);
      for (const n of names) {
        weightMap[n] = file;
        const e = src.entry(n)!;
        totalSize += numel(e.shape) * itemsize(outDtype(e.dtype));
      }
      files.push(join(outPath, file));
    }
    const index = (src.index ?? {}) as { metadata?: Record<string, unknown> };
    const indexName = (await readdir(baseDir)).find((n) => n.endsWith(".safetensors.index.json")) ?? "model.safetensors.index.json";
    const sortedMap = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    await writeFile(join(tmp, indexName), `${JSON.stringify({ metadata: { ...(index.metadata ?? {}), total_size: totalSize }, weight_map: sortedMap }, null, 2)}\n`);
    files.push(join(outPath, indexName));
    // Small companion files (config.json, tokenizer, ...) travel with the weights.
    for (const n of await readdir(baseDir)) {
      if (n.endsWith(".safetensors") || n.endsWith(".safetensors.index.json") || n.startsWith(".")) continue;
      if (statSync(join(baseDir, n)).isFile()) await copyFile(join(baseDir, n), join(tmp, n));
    }
    if (existsSync(outPath)) await rmdir(outPath);
    await rename(tmp, outPath);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
