/**
 * Big tensors through shared memory instead of ZeroMQ frames (Linux). The sender writes the bytes into a file in
 * the session's private 0700 folder under /dev/shm and sends only the file's name as the tensor's frame, with
 * `shm: true` in its descriptor; the receiver maps the file (no copy on this side: loraport's native mmap helper)
 * and unlinks it. A ZeroMQ frame of 256 MiB costs several copies and fresh-page faults on both sides; this is one
 * kernel copy on the way in and none on the way out. The folder goes with the session (both sides remove it).
 *
 * Files are recycled: a fresh tmpfs file costs a page allocation per 4 KiB on top of the copy (measured: writing
 * 64 MiB into a new file took 1.85× as long as into an existing one). So a receiver does not unlink a file it
 * mapped: it renames it `u-…` (in use; no descriptor can name it) and, once its mapping is garbage, `f-…` (free),
 * unless the free files already hold `poolBytes`. A sender claims a free file by renaming it to its new `t-` name
 * (atomic: of two claimers one wins) and overwrites it. Both sides follow this when the session's config says
 * `shmPoolBytes` > 0; with 0 every file is unlinked once read, as before.
 */
import { chmodSync, closeSync, constants, existsSync, ftruncateSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { ProtocolError } from "../../errors.js";
import { mapRanges, mmapAvailable } from "../../formats/mmap.js";

/** Tensors of at least this many bytes go through shared memory by default. */
export const DEFAULT_SHARED_MEMORY_THRESHOLD = 16 << 20;

/** Free files kept for reuse, at most this many bytes of them (they hold their pages in /dev/shm while idle). */
export const DEFAULT_SHARED_MEMORY_POOL_BYTES = 512 << 20;

/** File names both sides create: `t-` and 24 hex digits. Anything else in a descriptor is refused. */
const NAME = /^t-[0-9a-f]{24}$/;
/** A free file (`f-`), ready for a sender to claim. */
const FREE = /^f-[0-9a-f]{24}$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

export interface SharedMemory {
  readonly dir: string;
  readonly threshold: number;
  /** Free files kept for reuse, in bytes; 0: every file is unlinked once read. */
  readonly poolBytes: number;
}

/** A private folder in /dev/shm for one session, or undefined where shared memory is not usable here. */
export function createSharedMemory(threshold: number, poolBytes = DEFAULT_SHARED_MEMORY_POOL_BYTES): (SharedMemory & { dispose(): void }) | undefined {
  if (process.platform !== "linux" || !Number.isFinite(threshold) || !existsSync("/dev/shm") || !mmapAvailable()) return undefined;
  let dir: string;
  try {
    dir = mkdtempSync("/dev/shm/loraport-");
    chmodSync(dir, 0o700);
  } catch {
    return undefined; // no writable /dev/shm (some containers): frames it is
  }
  return { dir, threshold, poolBytes, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

const newName = (prefix: string) => `${prefix}-${randomBytes(12).toString("hex")}`;

/** Rename a free file to `path` (the one closest in size to `nbytes`, not smaller if any is); false when none. */
function claimFree(shm: SharedMemory, nbytes: number, path: string): boolean {
  if (shm.poolBytes <= 0) return false;
  let names: string[];
  try {
    names = readdirSync(shm.dir).filter((n) => FREE.test(n));
  } catch {
    return false;
  }
  const sized = names.flatMap((n) => {
    try {
      return [{ n, size: statSync(join(shm.dir, n)).size }];
    } catch {
      return []; // claimed by the other side meanwhile
    }
  });
  // Fewest pages to allocate or free: an exact fit, else the smallest bigger one, else the biggest.
  sized.sort((a, b) => (a.size >= nbytes ? a.size - nbytes : 2 ** 53 + nbytes - a.size) - (b.size >= nbytes ? b.size - nbytes : 2 ** 53 + nbytes - b.size));
  for (const { n } of sized) {
    try {
      renameSync(join(shm.dir, n), path);
      return true;
    } catch {
      // the other side claimed it first: try the next one
    }
  }
  return false;
}

/** A mapped file's mapping is garbage: its file goes back to the pool (as `f-`), or away when the pool is full. */
export function releaseToPool(dir: string, poolBytes: number, inUse: string): void {
  const path = join(dir, inUse);
  try {
    let pooled = 0;
    for (const n of readdirSync(dir)) if (FREE.test(n)) pooled += statSync(join(dir, n), { throwIfNoEntry: false })?.size ?? 0;
    const size = statSync(path).size;
    if (pooled + size <= poolBytes) renameSync(path, join(dir, newName("f")));
    else rmSync(path, { force: true });
  } catch {
    rmSync(path, { force: true }); // the session is gone (folder removed) or the file is: nothing to keep
  }
}

// Received files whose bytes are mapped: when the buffer is collected, its file goes back to the pool.
const inUseFiles = new FinalizationRegistry<{ dir: string; poolBytes: number; name: string }>((f) => releaseToPool(f.dir, f.poolBytes, f.name));

/** Write `bytes` to a new file in the folder; the frame to send instead (the file's name). */
export function writeSharedTensor(shm: SharedMemory, bytes: Uint8Array): Uint8Array {
  const name = newName("t");
  const path = join(shm.dir, name);
  const reused = claimFree(shm, bytes.byteLength, path);
  let fd: number;
  try {
    fd = reused ? openSync(path, constants.O_RDWR | constants.O_NOFOLLOW) : openSync(path, "wx", 0o600);
  } catch (e) {
    if (reused) rmSync(path, { force: true });
    throw e;
  }
  let ok = false;
  try {
    if (reused) ftruncateSync(fd, bytes.byteLength);
    for (let done = 0; done < bytes.byteLength;) {
      done += writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30), done);
    }
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) rmSync(path, { force: true });
  }
  return Buffer.from(name);
}

/** The bytes of a tensor the sidecar put in shared memory: mapped, checked against `nbytes`, and unlinked. */
export function readSharedTensor(shm: SharedMemory | undefined, frame: Uint8Array, nbytes: number, label: string): Uint8Array {
  if (shm === undefined) throw new ProtocolError(`tensor ${label}: sent through shared memory, which this session did not set up`);
  let name: string;
  try {
    name = utf8.decode(frame);
  } catch {
    name = "";
  }
  if (!NAME.test(name)) throw new ProtocolError(`tensor ${label}: shared-memory frame is not a file name of the form t-<24 hex digits>`);
  const path = join(shm.dir, name);
  let mapped: Uint8Array | undefined;
  try {
    const size = statSync(path).size;
    if (size !== nbytes) throw new ProtocolError(`tensor ${label}: shared-memory file ${name} has ${size} bytes, descriptor says ${nbytes}`);
    mapped = mapRanges(path, [[0, nbytes]], { countAsMemory: true })![0]!;
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    throw new ProtocolError(`tensor ${label}: cannot read shared-memory file ${name}: ${(e as Error).message}`);
  } finally {
    if (mapped === undefined || shm.poolBytes <= 0 || nbytes === 0) rmSync(path, { force: true });
  }
  if (shm.poolBytes > 0 && nbytes > 0) {
    // Kept for reuse once the bytes are garbage (every view of them shares this ArrayBuffer).
    const inUse = newName("u");
    try {
      renameSync(path, join(shm.dir, inUse));
      inUseFiles.register(mapped.buffer, { dir: shm.dir, poolBytes: shm.poolBytes, name: inUse });
    } catch {
      rmSync(path, { force: true });
    }
  }
  return mapped;
}
