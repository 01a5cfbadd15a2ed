/**
 * A wrong Python environment for the sidecar: a real virtual environment without pyzmq (made here from the
 * project's interpreter, without its packages) and an interpreter path that does not exist. Both reject with
 * SidecarEnvironmentError saying which interpreter was tried, where that choice came from, and that
 * `npm run setup` makes the right one — not Python's raw `ModuleNotFoundError` traceback.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SidecarEnvironmentError, SidecarExitedError } from "../../src/errors.js";
import { Sidecar } from "../../src/bridge/index.js";
import { PYTHON, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const tmp = tempDir("loraport-pyenv-");
afterAll(() => tmp.cleanup());

async function startError(opts: Parameters<typeof Sidecar.start>[0]): Promise<SidecarEnvironmentError> {
  const err = await Sidecar.start(opts).then(async (sc) => {
    await sc.close();
    return undefined;
  }, (e: unknown) => e);
  expect(err).toBeInstanceOf(SidecarEnvironmentError);
  expect(err).toBeInstanceOf(SidecarExitedError); // callers that catch the older class still do
  return err as SidecarEnvironmentError;
}

describe("the sidecar's Python environment", () => {
  it("names a venv without pyzmq, the missing module, and `npm run setup`", async () => {
    const venv = join(tmp.dir, "bare-venv");
    // The project's own interpreter, without its site-packages: a real environment that lacks zmq.
    execFileSync(PYTHON, ["-m", "venv", "--without-pip", venv], { stdio: "ignore", timeout: limit(60_000) });
    const python = join(venv, "bin", "python");
    expect(() => execFileSync(python, ["-c", "import zmq"], { stdio: "ignore" })).toThrow(); // the premise
    const e = await startError({ python, startTimeoutMs: limit(60_000) });
    expect(e.code).toBe("E_SIDECAR_ENV");
    expect(e.python).toBe(python);
    expect(e.missingModule).toBe("zmq");
    expect(e.message).toContain(`${python} (from the python option)`);
    expect(e.message).toContain("has no module 'zmq'");
    expect(e.message).toContain("`npm run setup`");
    expect(e.message).not.toContain("Traceback");
    expect(e.stderrTail).toContain("ModuleNotFoundError"); // the raw output is kept for whoever wants it
  }, limit(90_000));

  it("names $LORAPORT_PYTHON when that is where the interpreter came from, and one that does not exist", async () => {
    const missing = join(tmp.dir, "no-such-python");
    const before = process.env["LORAPORT_PYTHON"];
    process.env["LORAPORT_PYTHON"] = missing;
    try {
      const e = await startError({ startTimeoutMs: limit(60_000) });
      expect(e.python).toBe(missing);
      expect(e.message).toContain(`${missing} (from $LORAPORT_PYTHON) does not exist`);
      expect(e.message).toContain("`npm run setup`");
    } finally {
      if (before === undefined) delete process.env["LORAPORT_PYTHON"];
      else process.env["LORAPORT_PYTHON"] = before;
    }
  }, limit(60_000));

  it("names a project root whose .venv was never made", async () => {
    const root = join(tmp.dir, "fresh-clone");
    const before = process.env["LORAPORT_PYTHON"];
    delete process.env["LORAPORT_PYTHON"];
    try {
      const e = await startError({ root });
      expect(e.python).toBe(join(root, ".venv", "bin", "python"));
      expect(e.message).toMatch(/does not exist: `npm run setup` \(in .*fresh-clone\) makes it/);
    } finally {
      if (before !== undefined) process.env["LORAPORT_PYTHON"] = before;
    }
  });
});
