/**
 * A model's safetensors weights as one TensorSource: a single file, a folder with `model.safetensors`,
 * or a sharded checkpoint described by `*.safetensors.index.json` (`weight_map`: tensor name → shard file).
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { FileMissingError, FormatError } from "../../errors.js";
import type { Tensor } from "../../tensor/tensor.js";
import type { ReadOptions } from "../limits.js";
import type { SafetensorsEntry } from "./header.js";
import { preview } from "./header.js";
import { openSafetensors, type TensorSource } from "./reader.js";

export type ModelSource = TensorSource & { readonly shards: readonly string[]; readonly index?: unknown };

export async function openSafetensorsModel(pathOrFolder: string, options: ReadOptions = {}): Promise<ModelSource> {
  const st = await stat(pathOrFolder).catch(() => undefined);
  if (!st) throw new FileMissingError(pathOrFolder);
  if (st.isFile()) {
    if (pathOrFolder.endsWith(".json")) return openSharded(pathOrFolder, options);
    const src = await openSafetensors(pathOrFolder, options);
    return Object.assign(src, { shards: [pathOrFolder] as const });
  }
  const single = join(pathOrFolder, "model.safetensors");
  if (await isFile(single)) return openSafetensorsModel(single, options);
  const names = await readdir(pathOrFolder);
  const indexes = names.filter((n) => n.endsWith(".safetensors.index.json"));
  if (indexes.length === 1) return openSharded(join(pathOrFolder, indexes[0]!), options);
  if (indexes.length > 1) throw new FormatError(pathOrFolder, `several safetensors index files (${indexes.join(", ")}); pass one of them`);
  throw new FileMissingError(pathOrFolder, `${pathOrFolder}: no model.safetensors or *.safetensors.index.json in this folder`);
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() === true;
}

async function openSharded(indexPath: string, options: ReadOptions): Promise<ModelSource> {
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, "utf8"));
  } catch (err) {
    throw new FormatError(indexPath, `safetensors index is not JSON (${(err as Error).message})`);
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new FormatError(indexPath, "safetensors index has no 'weight_map' object");
  }
  const folder = dirname(indexPath);
  const shardOf = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMap as Record<string, unknown>)) {
    // Shard names are plain file names in the index's folder; anything else could point outside it.
    if (typeof file !== "string" || file === "" || basename(file) !== file || file === "." || file === "..") {
      throw new FormatError(indexPath, `weight_map[${preview(name)}] is ${preview(file)}, expected a shard file name in the same folder`);
    }
    shardOf.set(name, file);
  }
  const shardFiles = [...new Set(shardOf.values())];
  const sources = new Map<string, TensorSource>();
  try {
    for (const file of shardFiles) sources.set(file, await openSafetensors(join(folder, file), options));
  } catch (err) {
    await Promise.all([...sources.values()].map((s) => s.close()));
    throw err;
  }
  for (const [name, file] of shardOf) {
    if (!sources.get(file)!.entry(name)) {
      await Promise.all([...sources.values()].map((s) => s.close()));
      throw new FormatError(indexPath, `weight_map says '${name}' is in ${file}, but that shard has no such tensor`);
    }
  }
  const first = sources.get(shardFiles[0] ?? "");
  return {
    names: [...shardOf.keys()],
    metadata: first?.metadata ?? {},
    shards: shardFiles.map((f) => join(folder, f)),
    index,
    entry(name: string): SafetensorsEntry | undefined {
      const file = shardOf.get(name);
      return file === undefined ? undefined : sources.get(file)!.entry(name);
    },
    async read(name: string): Promise<Tensor> {
      const file = shardOf.get(name);
      if (file === undefined) throw new FormatError(indexPath, `no tensor named '${name}' in weight_map`);
      return sources.get(file)!.read(name);
    },
    async close(): Promise<void> {
      await Promise.all([...sources.values()].map((s) => s.close()));
    },
  };
}
