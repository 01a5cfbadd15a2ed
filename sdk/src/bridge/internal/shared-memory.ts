/**
 * Big tensors through shared memory instead of ZeroMQ frames (Linux). The sender writes the bytes into a file in
 * the session's private 0700 folder under /dev/shm and sends only the file's name as the tensor's frame, with
 * `shm: true` in its descriptor; the receiver maps the file (no copy on this side: loraport's native mmap helper)
 * and unlinks it. A ZeroMQ frame of 256 MiB costs several copies and fresh-page faults on both sides; this is one
 * kernel copy on the way in and none on the way out. The folder goes with the session (both sides remove it).
 */
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { ProtocolError } from "../../errors.js";
import { mapRanges, mmapAvailable } from "../../formats/mmap.js";

/** Tensors of at least this many bytes go through shared memory by default. */
export const DEFAULT_SHARED_MEMORY_THRESHOLD = 16 << 20;

/** File names both sides create: `t-` and 24 hex digits. Anything else in a descriptor is refused. */
const NAME = /^t-[0-9a-f]{24}$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

export interface SharedMemory {
  readonly dir: string;
  readonly threshold: number;
}

/** A private folder in /dev/shm for one session, or undefined where shared memory is not usable here. */
export function createSharedMemory(threshold: number): (SharedMemory & { dispose(): void }) | undefined {
  if (process.platform !== "linux" || !Number.isFinite(threshold) || !existsSync("/dev/shm") || !mmapAvailable()) return undefined;
  let dir: string;
  try {
    dir = mkdtempSync("/dev/shm/loraport-");
    chmodSync(dir, 0o700);
  } catch {
    return undefined; // no writable /dev/shm (some containers): frames it is
  }
  return { dir, threshold, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Write `bytes` to a new file in the folder; the frame to send instead (the file's name). */
export function writeSharedTensor(shm: SharedMemory, bytes: Uint8Array): Uint8Array {
  const name = `t-${randomBytes(12).toString("hex")}`;
  const path = join(shm.dir, name);
  const fd = openSync(path, "wx", 0o600);
  let ok = false;
  try {
    for (let done = 0; done < bytes.byteLength;) {
      done += writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30));
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
  try {
    const size = statSync(path).size;
    if (size !== nbytes) throw new ProtocolError(`tensor ${label}: shared-memory file ${name} has ${size} bytes, descriptor says ${nbytes}`);
    return mapRanges(path, [[0, nbytes]], { countAsMemory: true })![0]!;
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    throw new ProtocolError(`tensor ${label}: cannot read shared-memory file ${name}: ${(e as Error).message}`);
  } finally {
    rmSync(path, { force: true });
  }
}
