/**
 * Lazy safetensors reader: the header is read and validated on open; tensor bytes are read by offset
 * only when asked for, so listing a huge file or reading one tensor of it costs only that tensor's memory.
 * `readSafetensors` reads a whole file, memory-mapping big ones where the native helper is built.
 */
import { closeSync, fstatSync, openSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { FileMissingError, FormatError } from "../../errors.js";
import type { Tensor } from "../../tensor/tensor.js";
import { fromBytes } from "../../tensor/tensor-impl.js";
import { readExactly, readExactlySync } from "../atomic-file.js";
import { ReadBudget, type ReadOptions } from "../limits.js";
import { mapRanges, mmapAvailable } from "../mmap.js";
import { headerLength, parseHeader, type ParsedHeader, type SafetensorsEntry } from "./header.js";

/** Named tensors that can be listed without reading their data. */
export interface TensorSource {
  readonly names: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  entry(name: string): SafetensorsEntry | undefined;
  read(name: string): Promise<Tensor>;
  close(): Promise<void>;
}

export async function openFileForReading(path: string): Promise<FileHandle> {
  try {
    return await open(path, "r");
  } catch (err) {
    throw openError(path, err);
  }
}

function openError(path: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new FileMissingError(path);
  if (code === "EISDIR") return new FormatError(path, "is a folder, expected a file");
  return new FormatError(path, `cannot open: ${(err as Error).message}`);
}

/** Read and validate the length prefix and JSON header. */
async function readHeader(fh: FileHandle, path: string, options: ReadOptions): Promise<ParsedHeader & { fileSize: number }> {
  const { size } = await fh.stat();
  if (size < 8) throw new FormatError(path, `not a safetensors file: ${size} bytes, shorter than the 8-byte header length`);
  const n = headerLength(path, await readExactly(fh, 0, 8, path), size);
  return { ...parseHeader(path, await readExactly(fh, 8, n, path), size, new ReadBudget(path, size, options.limits)), fileSize: size };
}

/** Open one safetensors file; the header is validated before this resolves. */
export async function openSafetensors(path: string, options: ReadOptions = {}): Promise<TensorSource> {
  const fh = await openFileForReading(path);
  try {
    const header = await readHeader(fh, path, options);
    return new FileSource(path, fh, header.entries, header.metadata);
  } catch (err) {
    await fh.close();
    throw err;
  }
}

class FileSource implements TensorSource {
  readonly names: readonly string[];
  private readonly byName: Map<string, SafetensorsEntry>;
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly fh: FileHandle,
    entries: readonly SafetensorsEntry[],
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.byName = new Map(entries.map((e) => [e.name, e]));
    this.names = entries.map((e) => e.name);
  }

  entry(name: string): SafetensorsEntry | undefined {
    return this.byName.get(name);
  }

  async read(name: string): Promise<Tensor> {
    if (this.closed) throw new FormatError(this.path, `read '${name}' after close()`);
    const e = this.byName.get(name);
    if (!e) throw new FormatError(this.path, `no tensor named '${name}'`);
    const bytes = await readExactly(this.fh, e.byteOffset, e.byteLength, this.path);
    return fromBytes(e.dtype, e.shape, bytes);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

/** Up to this much tensor data is read in one call and shared by the tensors (views into one buffer). */
const ONE_READ_BYTES = 256 << 20;

/** Files with more tensor data than this are memory-mapped (when the native helper is built), tensor by tensor. */
export const MMAP_MIN_BYTES = 16 << 20;

export interface ReadSafetensorsOptions extends ReadOptions {
  /**
   * Map each tensor's bytes from the file (copy-on-write) instead of copying them into memory: the default for
   * files with more than 16 MiB of tensor data where loraport's native helper is built (see `formats/mmap.ts`).
   * `false` always copies; `true` maps any file when the helper is available.
   */
  mmap?: boolean;
}

/**
 * Read a whole safetensors file. Big files are memory-mapped where possible (like Python's load_file), one
 * mapping per tensor so that each tensor's buffer stands alone; otherwise small files come back as views into one
 * buffer (one read) and big ones as one buffer per tensor.
 */
export async function readSafetensors(path: string, options: ReadSafetensorsOptions = {}): Promise<{ tensors: Map<string, Tensor>; metadata: Record<string, string> }> {
  if (options.mmap !== false && mmapAvailable()) {
    const mapped = readMapped(path, options.mmap === true, options);
    if (mapped) return mapped;
  }
  const fh = await openFileForReading(path);
  try {
    const { entries, metadata, dataStart, fileSize: size } = await readHeader(fh, path, options);
    const tensors = new Map<string, Tensor>();
    const dataBytes = size - dataStart;
    if (dataBytes <= ONE_READ_BYTES) {
      // Many small tensors (an adapter): one read instead of one per tensor.
      const data = await readExactly(fh, dataStart, dataBytes, path);
      for (const e of entries) tensors.set(e.name, fromBytes(e.dtype, e.shape, data.subarray(e.byteOffset - dataStart, e.byteOffset - dataStart + e.byteLength)));
    } else {
      for (const e of entries) tensors.set(e.name, fromBytes(e.dtype, e.shape, await readExactly(fh, e.byteOffset, e.byteLength, path)));
    }
    return { tensors, metadata };
  } finally {
    await fh.close();
  }
}

/**
 * The mapped read: header read and validated with synchronous calls (a few microseconds, where each async fs
 * call costs a thread-pool round trip), then one mapping per tensor. Undefined when the file is too small to be
 * worth mapping and `force` is false.
 */
function readMapped(path: string, force: boolean, options: ReadOptions): { tensors: Map<string, Tensor>; metadata: Record<string, string> } | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw openError(path, err);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new FormatError(path, `not a safetensors file: ${size} bytes, shorter than the 8-byte header length`);
    const n = headerLength(path, readExactlySync(fd, 0, 8, path), size);
    const { entries, metadata, dataStart } = parseHeader(path, readExactlySync(fd, 8, n, path), size, new ReadBudget(path, size, options.limits));
    if (!force && size - dataStart <= MMAP_MIN_BYTES) return undefined;
    const tensors = new Map<string, Tensor>();
    const mapped = mapRanges(path, entries.map((e) => [e.byteOffset, e.byteLength] as const))!;
    entries.forEach((e, i) => tensors.set(e.name, fromBytes(e.dtype, e.shape, mapped[i]!)));
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}
