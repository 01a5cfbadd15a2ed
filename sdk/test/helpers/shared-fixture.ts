/**
 * Fixtures several test files need (the same tiny models, exports and reference outputs): built once per vitest run
 * by the first file that asks, reused by the others, instead of every file paying for the same Python start and ONNX
 * exports. Still produced by the reference implementation in the same run, in the run's temp folder
 * (sdk/test/global-setup.ts), keyed by what builds them; a lock file makes the two workers build each one once.
 * Users must treat the folder as read-only (write their own outputs into their own temp folder).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync, closeSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { inject } from "vitest";

let fallbackRoot: string | undefined;

/** The run's folder (from the global setup); a per-process one when run without it. */
function root(): string {
  const provided = inject("sharedFixtureRoot") as string | undefined;
  if (provided) return provided;
  if (!fallbackRoot) {
    const dir = mkdtempSync(join(tmpdir(), "loraport-shared-fixtures-"));
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    fallbackRoot = dir;
  }
  return fallbackRoot;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Take the lock (true), or find it held by a live builder (false). A dead builder's lock is taken over. */
function tryLock(lock: string): boolean {
  try {
    const fd = openSync(lock, "wx");
    writeSync(fd, String(process.pid));
    closeSync(fd);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  let owner = "";
  try {
    owner = readFileSync(lock, "utf8");
  } catch {
    return tryLock(lock); // released just now
  }
  // An empty file is a builder between creating and writing it: alive.
  if (owner === "" || alive(Number(owner))) return false;
  rmSync(lock, { force: true });
  return tryLock(lock);
}

/**
 * The fixture `name` for `key` (anything JSON; it must determine what `build` makes): `build(dir)` runs once per
 * test run into a fresh `dir`, and every caller gets that `dir` and what `build` returned (JSON-serialisable).
 * A failed build is not cached: the next caller builds again (and reports its own error).
 */
export async function sharedFixture<T>(name: string, key: unknown, build: (dir: string) => T | Promise<T>): Promise<{ dir: string; value: T }> {
  const id = `${name}-${createHash("sha256").update(JSON.stringify(key) ?? "").digest("hex").slice(0, 12)}`;
  const base = root();
  const dir = join(base, id);
  const done = join(base, `${id}.json`);
  const lock = join(base, `${id}.lock`);
  for (;;) {
    if (existsSync(done)) return { dir, value: JSON.parse(readFileSync(done, "utf8")) as T };
    if (tryLock(lock)) break;
    await sleep(250);
  }
  try {
    if (existsSync(done)) return { dir, value: JSON.parse(readFileSync(done, "utf8")) as T };
    rmSync(dir, { recursive: true, force: true }); // what a dead builder left
    mkdirSync(dir, { recursive: true });
    const value = await build(dir);
    writeFileSync(`${done}.tmp-${process.pid}`, JSON.stringify(value));
    renameSync(`${done}.tmp-${process.pid}`, done);
    return { dir, value };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    try {
      unlinkSync(lock);
    } catch {
      // gone already
    }
  }
}
