/**
 * Atomic file output: write to a temp file in the destination's folder, fsync, then rename over the
 * destination, so a crash never leaves a half-written file where a reader expects a whole one. Failures of
 * the file system are reported as OutputWriteError naming the output and the reason.
 * Also the positional read/write helpers the formats share (exact reads into fresh aligned buffers).
 */
import { readSync } from "node:fs";
import { open, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { constants } from "node:buffer";
import { FormatError, LoraportError, OutputWriteError } from "../errors.js";

/** Largest single write/read call (Node refuses buffers past 2 GiB in one fs call). */
export const IO_CHUNK = 1 << 30;

/**
 * Write-back started while writing: after this many bytes an fdatasync is started in the background (one at a
 * time), so the disk works while the next tensors are copied in and the final fsync waits for the tail only.
 * Measured on the bench machine: 128 MiB write + fsync 100 ms straight, 80 ms this way.
 */
const SYNC_EVERY_BYTES = 32 << 20;

/** Background syncs of a file being written by `writeFileAtomic`. */
interface SyncState {
  sinceSync: number;
  pending: Promise<void> | undefined;
  error: unknown;
}
const syncing = new WeakMap<FileHandle, SyncState>();

/** Write all of `bytes` at `position`, in chunks below the fs call limit. */
export async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  const sync = syncing.get(fh);
  let done = 0;
  while (done < bytes.byteLength) {
    const len = Math.min(IO_CHUNK, bytes.byteLength - done);
    const { bytesWritten } = await fh.write(bytes, done, len, position + done);
    done += bytesWritten;
    if (sync) {
      sync.sinceSync += bytesWritten;
      if (sync.sinceSync >= SYNC_EVERY_BYTES && !sync.pending) {
        sync.sinceSync = 0;
        sync.pending = fh.datasync().then(
          () => void (sync.pending = undefined),
          (err: unknown) => {
            sync.error ??= err;
            sync.pending = undefined;
          },
        );
      }
    }
  }
  return position + done;
}

/**
 * Run `fill` on a temp file next to `path`, fsync it, then rename it to `path`. The temp is removed on failure.
 * File-system failures (no space, a folder in the way, a missing parent, permissions) become an
 * `OutputWriteError` naming `path` and the reason; other errors from `fill` pass through unchanged.
 */
export async function writeFileAtomic(path: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
  await checkDestination(path);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  let fh: FileHandle;
  try {
    fh = await open(tmp, "wx");
  } catch (err) {
    throw outputWriteError(path, err);
  }
  let ok = false;
  const sync: SyncState = { sinceSync: 0, pending: undefined, error: undefined };
  syncing.set(fh, sync);
  try {
    await fill(fh);
    await sync.pending;
    if (sync.error !== undefined) throw sync.error;
    await fh.sync();
    ok = true;
  } catch (err) {
    await sync.pending;
    throw outputWriteError(path, err);
  } finally {
    syncing.delete(fh);
    await fh.close().catch(() => {});
    if (!ok) await unlink(tmp).catch(() => {});
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw outputWriteError(path, err);
  }
  // The folder is not fsynced: after a crash the destination holds the old file or the whole new one, never a
  // partial one, which is the guarantee asked for; syncing the folder too cost ~20% of a 128 MiB write.
}

/** An existing destination must be a regular file: renaming over a folder fails late, over a device replaces it. */
async function checkDestination(path: string): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return; // a new file (a missing parent folder is reported when the temp is created)
    throw outputWriteError(path, err);
  }
  if (st.isDirectory()) throw new OutputWriteError(path, "it is a folder; give a file path");
  if (!st.isFile()) throw new OutputWriteError(path, "it exists and is not a regular file (a device, pipe or socket); give a file path");
}

const REASONS: Readonly<Record<string, (path: string) => string>> = {
  ENOSPC: () => "no space left on the device",
  EDQUOT: () => "disk quota exceeded",
  EFBIG: () => "the file is larger than this file system (or the process's file-size limit) allows",
  EISDIR: () => "it is a folder; give a file path",
  ENOENT: (p) => `its folder ${dirname(p)} does not exist`,
  ENOTDIR: (p) => `a part of ${dirname(p)} is not a folder`,
  EACCES: (p) => `permission denied (no write access to ${dirname(p)})`,
  EPERM: (p) => `operation not permitted in ${dirname(p)}`,
  EROFS: () => "the file system is read-only",
  EIO: () => "an I/O error from the device",
  ENAMETOOLONG: () => "the path is too long",
  EXDEV: () => "the temp file and the destination are on different file systems",
  EMFILE: () => "too many open files",
};

/** An error from the file system while writing `path` → `OutputWriteError`; anything else is returned unchanged. */
export function outputWriteError(path: string, err: unknown): unknown {
  if (err instanceof LoraportError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code !== "string" || !/^E[A-Z0-9]+$/.test(code)) return err;
  const reason = REASONS[code]?.(path) ?? `${(err as Error).message.split("\n")[0]}`;
  return new OutputWriteError(path, `${reason} (${code})`, code, { cause: err });
}

/** Read exactly `length` bytes at `position` into a fresh, 8-byte-aligned buffer (no zero-fill). */
export async function readExactly(fh: FileHandle, position: number, length: number, file: string): Promise<Uint8Array> {
  checkAllocatable(file, `${length} bytes at offset ${position}`, length);
  const out = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, done, Math.min(IO_CHUNK, length - done), position + done);
    if (bytesRead === 0) {
      throw new FormatError(file, `file ended at byte ${position + done}, expected ${length - done} more bytes`);
    }
    done += bytesRead;
  }
  return new Uint8Array(out.buffer, out.byteOffset, length);
}

/** `readExactly` with a synchronous read on a file descriptor (for small reads where a thread-pool hop costs more). */
export function readExactlySync(fd: number, position: number, length: number, file: string): Uint8Array {
  checkAllocatable(file, `${length} bytes at offset ${position}`, length);
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const got = readSync(fd, out, done, length - done, position + done);
    if (got === 0) throw new FormatError(file, `file ended at byte ${position + done}, expected ${length - done} more bytes`);
    done += got;
  }
  return out;
}

/** One buffer cannot exceed the runtime's limit (4 GiB on Node 20): a typed error instead of a RangeError. */
export function checkAllocatable(file: string, what: string, bytes: number): void {
  if (bytes > constants.MAX_LENGTH) {
    throw new FormatError(file, `${what} is larger than one buffer can hold here (${constants.MAX_LENGTH} bytes)`);
  }
}
