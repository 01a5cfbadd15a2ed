/**
 * Memory-mapped file ranges through loraport's one native helper (sdk/native/mmap.c, compiled by the set-up into
 * build/native/). A mapped tensor costs page faults on first use instead of a copy up front, as with Python's
 * safetensors.torch.load_file. Where the helper is not built (no C compiler), on Windows, or with LORAPORT_MMAP=0,
 * `mapRange` returns undefined and readers use fs reads; results are identical either way.
 *
 * Caveat, as for every mmap reader (Python's included): truncating a file while tensors mapped from it are alive
 * makes the next touch of a lost page raise SIGBUS. Replacing a file (write + rename, as loraport's writers do) is
 * safe: the mapping keeps the old contents.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { FormatError } from "../errors.js";
import { packageRoot } from "../internal/package-root.js";

interface NativeMmap {
  /** `ranges` is flat: [offset0, length0, offset1, length1, ...]; one mapping (ArrayBuffer) per range. */
  mapRanges(path: string, ranges: number[], countAsMemory?: boolean): ArrayBuffer[];
  pageSize(): number;
}

/** Where scripts/setup.sh puts the compiled helper. */
export const NATIVE_MMAP_PATH = join("build", "native", "loraport_mmap.node");

let native: NativeMmap | null | undefined;

function load(): NativeMmap | null {
  if (native !== undefined) return native;
  native = null;
  if (process.platform === "win32" || process.env["LORAPORT_MMAP"] === "0") return native;
  const file = join(packageRoot(), NATIVE_MMAP_PATH);
  if (!existsSync(file)) return native;
  try {
    native = createRequire(import.meta.url)(file) as NativeMmap;
  } catch {
    native = null; // built for another platform or a broken build: fs reads still work
  }
  return native;
}

/** True when tensors can be memory-mapped here. */
export function mmapAvailable(): boolean {
  return load() !== null;
}

/**
 * The bytes of each [offset, length] range of `path`, mapped copy-on-write (writing to them never changes the
 * file), or undefined when mapping is not available here. Each range is its own mapping, freed when its bytes
 * are garbage-collected, so one tensor's buffer never keeps (or hands over) another's. One native call for all.
 */
export function mapRanges(
  path: string,
  ranges: ReadonlyArray<readonly [offset: number, length: number]>,
  options: { /** Tell V8 the mapping is memory (a /dev/shm file), so that it collects it; default false (file cache). */ countAsMemory?: boolean } = {},
): Uint8Array[] | undefined {
  const m = load();
  if (m === null) return undefined;
  let buffers: ArrayBuffer[];
  try {
    buffers = m.mapRanges(path, ranges.flat(), options.countAsMemory ?? false);
  } catch (err) {
    throw new FormatError(path, `cannot memory-map: ${(err as Error).message}`);
  }
  const page = m.pageSize();
  return buffers.map((buf, i) => {
    const [offset, length] = ranges[i]!;
    return new Uint8Array(buf, length === 0 ? 0 : offset % page, length);
  });
}
