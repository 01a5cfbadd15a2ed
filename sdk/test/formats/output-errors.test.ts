/**
 * Issue 12 class 5: file-system failures on outputs are `OutputWriteError`s naming the output and the reason
 * (never a bare ENOSPC/EISDIR/ENOENT), no temp file is left behind, and the CLI exits 1 with a one-line message.
 * Real failures only: a folder where the file should go, a missing parent, a file as parent, a device as the
 * destination, a full file system and a read-only one (a 64 KiB tmpfs and a read-only bind mount in a private
 * mount namespace, where `unshare` is allowed), and a folder without write permission (as an unprivileged user).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { OutputWriteError } from "../../src/errors.js";
import { writeSafetensors } from "../../src/formats/safetensors/writer.js";
import { fromBytes } from "../../src/tensor/tensor-impl.js";
import { REPO_ROOT, runPython, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const tmp = tempDir("loraport-out-err-");
afterAll(() => {
  chmodSync(tmp.dir, 0o755);
  tmp.cleanup();
});

const sd = () => new Map([["w", fromBytes("F32", [256, 256], new Uint8Array(256 * 256 * 4).fill(1))]]);

async function writeError(path: string): Promise<OutputWriteError> {
  const err = await writeSafetensors(path, sd()).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(OutputWriteError);
  const e = err as OutputWriteError;
  expect(e.output).toBe(path);
  expect(e.message).toContain(path);
  return e;
}

/** Nothing but `keep` in `dir`: a failed write leaves no `.tmp` behind. */
function noTempFiles(dir: string): void {
  expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
}

describe("output write failures are OutputWriteError naming the output", () => {
  it("a folder where the file should go", async () => {
    const dir = join(tmp.dir, "a-folder");
    mkdirSync(dir);
    const e = await writeError(dir);
    expect(e.message).toMatch(/is a folder; give a file path/);
    expect(statSync(dir).isDirectory()).toBe(true);
    noTempFiles(tmp.dir);
  });

  it("a missing parent folder (ENOENT)", async () => {
    const e = await writeError(join(tmp.dir, "missing", "x.safetensors"));
    expect(e.osCode).toBe("ENOENT");
    expect(e.message).toMatch(new RegExp(`its folder ${join(tmp.dir, "missing")} does not exist`));
  });

  it("a file where a parent folder should be (ENOTDIR)", async () => {
    writeFileSync(join(tmp.dir, "plain-file"), "x");
    const e = await writeError(join(tmp.dir, "plain-file", "x.safetensors"));
    expect(e.osCode).toBe("ENOTDIR");
  });

  it("a device as the destination is refused before anything is written (/dev/full stays a device)", async () => {
    const e = await writeError("/dev/full");
    expect(e.message).toMatch(/not a regular file/);
    expect(statSync("/dev/full").isCharacterDevice()).toBe(true);
    expect(readdirSync("/dev").filter((f) => f.startsWith(".full."))).toEqual([]);
  });

  // One child in a private mount namespace: a 64 KiB tmpfs (ENOSPC for a 256 KiB file) and a read-only bind mount.
  const canUnshare = spawnSync("unshare", ["-m", "true"]).status === 0;
  it.skipIf(!canUnshare)("a full file system (ENOSPC) and a read-only one (EROFS), in a private mount namespace", () => {
    const mnt = join(tmp.dir, "mnt");
    mkdirSync(mnt);
    const script = join(import.meta.dirname, "fuzz", "write-probe.ts");
    const out = execFileSync("unshare", ["-m", "sh", "-c", `mount -t tmpfs -o size=64k tmpfs "$1" && mkdir "$1/ro" && mount --bind -o ro "$1/ro" "$1/ro" && cd "$2" && exec "$3" --import tsx "$4" "$1/full.safetensors" "$1/ro/x.safetensors" && ls -a "$1"`, "sh", mnt, REPO_ROOT, process.execPath, script], { encoding: "utf8", timeout: limit(120_000) });
    const lines = out.trim().split("\n");
    const results = JSON.parse(lines[0]!) as Array<{ name: string; osCode?: string; output?: string; message: string }>;
    expect(results[0]).toMatchObject({ name: "OutputWriteError", osCode: "ENOSPC", output: join(mnt, "full.safetensors") });
    expect(results[0]!.message).toMatch(/no space left on the device/);
    expect(results[1]).toMatchObject({ name: "OutputWriteError", osCode: "EROFS", output: join(mnt, "ro", "x.safetensors") });
    // `ls -a` of the tmpfs after the failed write: no temp file left.
    expect(lines.slice(1).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  const isRoot = process.getuid?.() === 0;
  it("a folder without write permission (EACCES), with permission checks in force (root runs the probe without CAP_DAC_OVERRIDE)", () => {
    const dir = join(tmp.dir, "locked");
    mkdirSync(dir);
    chmodSync(dir, 0o555);
    chmodSync(tmp.dir, 0o755);
    const script = join(import.meta.dirname, "fuzz", "write-probe.ts");
    // Root ignores permissions: the probe then runs as root without CAP_DAC_OVERRIDE (dropped from the bounding set),
    // so the folder's mode bits apply. (Running it as nobody fails where the clone itself lies in a 0700 folder.)
    const probe = [process.execPath, "--import", "tsx", script, join(dir, "x.safetensors")];
    const argv = isRoot ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", ...probe] : probe;
    const res = spawnSync(argv[0]!, argv.slice(1), {
      cwd: REPO_ROOT, encoding: "utf8", timeout: limit(120_000),
      env: { ...process.env, TSX_TSCONFIG_PATH: join(REPO_ROOT, "tsconfig.json"), HOME: tmp.dir },
    });
    expect(res.status, res.stderr).toBe(0);
    const [r] = JSON.parse(res.stdout.trim().split("\n")[0]!) as Array<{ name: string; osCode?: string; message: string }>;
    expect(r).toMatchObject({ name: "OutputWriteError", osCode: "EACCES" });
    expect(r!.message).toMatch(/permission denied/);
  });
});

describe("the CLI", () => {
  it("convert --out into a missing folder: exit 1, one line naming the output and why", () => {
    const pt = join(tmp.dir, "in.pt");
    runPython("import sys, torch; torch.save({'w': torch.ones(2)}, sys.argv[1])", [pt]);
    const out = join(tmp.dir, "nowhere", "out.safetensors");
    const res = spawnSync(process.execPath, ["--import", "tsx", join(import.meta.dirname, "cli-entry.ts"), "convert", pt, "--out", out], { cwd: REPO_ROOT, encoding: "utf8", timeout: limit(120_000) });
    expect(res.status).toBe(1);
    expect(res.stderr.trim().split("\n")).toEqual([`loraport: cannot write ${out}: its folder ${join(tmp.dir, "nowhere")} does not exist (ENOENT)`]);
    expect(existsSync(out)).toBe(false);
  });
});
