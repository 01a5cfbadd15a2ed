/**
 * Atomic file output: write to a temp file in the destination's folder, fsync, then rename over the
 * destination, so a crash never leaves a half-written file where a reader expects a whole one.
 * Also the positional read/write helpers the formats share (exact reads into fresh aligned buffers).
 */
import { readSync } from "node:fs";
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { constants } from "node:buffer";
import { FormatError } from "../errors.js";

/** Largest single write/read call (Node refuses buffers past 2 GiB in one fs call). */
export const IO_CHUNK = 1 << 30;

/** Write all of `bytes` at `position`, in chunks below the fs call limit. */
export async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < bytes.byteLength) {
    const len = Math.min(IO_CHUNK, bytes.byteLength - done);
    const { bytesWritten } = await fh.write(bytes, done, len, position + done);
    done += bytesWritten;
  }
  return position + done;
}

/** Run `fill` on a temp file next to `path`, fsync it, then rename it to `path`. The temp is removed on failure. */
export async function writeFileAtomic(path: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fh = await open(tmp, "wx");
  let ok = false;
  try {
    await fill(fh);
    await fh.sync();
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await unlink(tmp).catch(() => {});
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  // The folder is not fsynced: after a crash the destination holds the old file or the whole new one, never a
  // partial one, which is the guarantee asked for; syncing the folder too cost ~20% of a 128 MiB write.
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
