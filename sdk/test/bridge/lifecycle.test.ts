/**
 * Process lifecycle with real processes: the sidecar killed mid-call, a call that ignores cancellation, restart
 * on the next call, the parent killed, close(), and the tcp + CURVE transport.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Dealer } from "zeromq";
import { encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { SidecarEnvironmentError, SidecarError, SidecarExitedError, TimeoutError } from "../../src/errors.js";
import { ModelHandle, Sidecar } from "../../src/bridge/index.js";
import { tensor } from "../../src/tensor/index.js";
import { describeThreads, procDirOf, procIsOurNamespace, procState } from "../helpers/proc.js";
import { REPO_ROOT, tempDir } from "../helpers/python.js";

/**
 * Running, and not a zombie: an orphaned sidecar is reparented to PID 1, which in some sandboxes never reaps it,
 * so kill(pid, 0) alone would call a zombie alive.
 */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const dir = procDirOf(pid, "loraport_sidecar");
  return dir !== undefined && !["Z", "X", "?"].includes(procState(dir));
}

function describeProcess(pid: number): string {
  const dir = procDirOf(pid, "loraport_sidecar");
  return dir === undefined ? "not found in /proc" : describeThreads(dir);
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return !alive(pid);
}

describe("sidecar lifecycle", () => {
  it("killed mid-call: pending calls reject within 1 s with exit details; no orphan, no socket files", async () => {
    const sc = await Sidecar.start();
    const pid = sc.pid!;
    const dir = sc.socketDir!;
    const shm = sc.sharedMemoryDir;
    expect(existsSync(join(dir, "c"))).toBe(true);
    const calls = [sc.call("sleep", { ms: 30_000 }), sc.call("echo", {}, [tensor("F32", [2])]), sc.call("sleep", { ms: 10 })];
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    process.kill(pid, "SIGKILL");
    const results = await Promise.allSettled(calls);
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeLessThan(1000);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      const e = (r as PromiseRejectedResult).reason as SidecarExitedError;
      expect(e).toBeInstanceOf(SidecarExitedError);
      expect(e.signal).toBe("SIGKILL");
    }
    expect(await waitGone(pid, 5000)).toBe(true);
    expect(existsSync(dir)).toBe(false);
    if (shm !== undefined) expect(existsSync(shm)).toBe(false);
    await expect(sc.call("ping", {})).rejects.toBeInstanceOf(SidecarExitedError); // no restart unless asked
    await sc.close();
  });

  it("a call that ignores cancellation gets the sidecar killed; with restartOnExit the next call starts a new one", async () => {
    const sc = await Sidecar.start({ restartOnExit: true, cancelGraceMs: 500, forceKillAfterMs: 500 });
    const first = sc.pid!;
    // A handle of this first session (no model needed: the check is on the TS side).
    const model = new ModelHandle(sc, { handle: "m1", architecture: "none", numParameters: 0, dtype: "F32", device: "cpu" }, sc.sessionGeneration);
    const stuck = sc.call("sleep", { ms: 30_000, ignoreCancel: true }, undefined, { timeoutMs: 200 });
    const queued = sc.call("echo", {});
    await expect(stuck).rejects.toBeInstanceOf(TimeoutError);
    const err = await queued.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SidecarExitedError);
    expect((err as SidecarExitedError).message).toMatch(/sleep #\d+ did not stop within 500 ms of being cancelled/);
    expect(await waitGone(first, 2000)).toBe(true);
    expect(await sc.ping()).toBeGreaterThan(0); // restarted
    expect(sc.pid).not.toBe(first);
    expect(sc.sessionGeneration).toBe(2);
    await expect(model.forward({ input_ids: tensor("I64", [1, 1]) })).rejects.toThrow(/belonged to a sidecar that has exited/);
    await sc.close();
  });

  it("close() ends the process, removes the socket folder, and later calls reject", async () => {
    const sc = await Sidecar.start();
    const pid = sc.pid!;
    const dir = sc.socketDir!;
    const pending = sc.call("sleep", { ms: 30_000 }).catch((e: unknown) => e);
    await sc.close();
    expect(await pending).toBeInstanceOf(SidecarError);
    expect(await waitGone(pid, 3000)).toBe(true);
    expect(existsSync(dir)).toBe(false);
    await expect(sc.call("ping", {})).rejects.toBeInstanceOf(SidecarError);
  });

  it("the parent killed: the sidecar exits and leaves no socket files", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "sdk/test/bridge/fixtures/parent.ts")], {
      cwd: REPO_ROOT, stdio: ["ignore", "pipe", "inherit"],
    });
    const line = await new Promise<string>((resolve, reject) => {
      let buf = "";
      child.stdout!.on("data", (d: Buffer) => {
        buf += d.toString();
        if (buf.includes("\n")) resolve(buf.split("\n")[0]!);
      });
      child.once("exit", (code) => reject(new Error(`parent fixture exited early (${code})`)));
    });
    const { pid, dir, shm } = JSON.parse(line) as { pid: number; dir: string; shm: string | null };
    expect(alive(pid)).toBe(true);
    const t0 = performance.now();
    child.kill("SIGKILL");
    // No deadline is the point here, only that it exits: the orphan may be inside `import torch` (which holds the
    // GIL through dlopen) when its parent dies, and on a loaded 2-core CI machine that can take seconds.
    const gone = await waitGone(pid, 30_000);
    const ms = Math.round(performance.now() - t0);
    const ns = procIsOurNamespace() ? "ours" : "another PID namespace's";
    console.log(`parent killed: the sidecar was gone ${ms} ms later (/proc is ${ns})`);
    expect(gone, `sidecar ${pid} still running ${ms} ms after its parent was killed: ${describeProcess(pid)}`).toBe(true);
    expect(existsSync(dir)).toBe(false);
    if (shm !== null) expect(existsSync(shm), "the shared-memory folder is removed by the orphaned sidecar").toBe(false);
  });

  it("an interpreter that cannot start the sidecar fails start() with a SidecarExitedError carrying its exit code and stderr", async () => {
    const t = tempDir("loraport-badpy-");
    try {
      const crash = join(t.dir, "crash.sh");
      writeFileSync(crash, "#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 3\n");
      const chatty = join(t.dir, "chatty.sh");
      writeFileSync(chatty, "#!/bin/sh\necho 'hello there'\nsleep 30\n");
      chmodSync(crash, 0o755);
      chmodSync(chatty, 0o755);
      const e1 = (await Sidecar.start({ python: crash }).catch((e: unknown) => e)) as SidecarExitedError;
      expect(e1).toBeInstanceOf(SidecarExitedError);
      expect(e1.exitCode).toBe(3);
      expect(e1.message).toContain("No module named torch");
      const e2 = (await Sidecar.start({ python: chatty, forceKillAfterMs: 200 }).catch((e: unknown) => e)) as Error;
      expect(e2.message).toContain(`printed "hello there" instead of its READY line`);
      const e3 = (await Sidecar.start({ python: join(t.dir, "missing") }).catch((e: unknown) => e)) as Error;
      expect(e3).toBeInstanceOf(SidecarEnvironmentError); // (python-environment.test.ts has the messages)
      expect(e3.message).toMatch(/missing \(from the python option\) does not exist/);
    } finally {
      t.cleanup();
    }
  });

  it("tcp transport: loopback only, CURVE-encrypted, and a client without the keys gets nothing", async () => {
    await using sc = await Sidecar.start({ transport: "tcp" });
    expect(sc.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const big = tensor("F32", [1024, 1024], Float32Array.from({ length: 1 << 20 }, (_, i) => i % 97));
    const { named } = await sc.call("echo", {}, { big });
    expect(Buffer.from(named["big"]!.data.buffer, named["big"]!.data.byteOffset, 1 << 22).equals(Buffer.from(big.data.buffer))).toBe(true);
    const intruder = new Dealer({ linger: 0, receiveTimeout: 1000 });
    intruder.connect(sc.endpoint!);
    await intruder.send([encode({ v: 1, id: 1, kind: "request", method: "ping", params: {}, tensors: [] })]).catch(() => {});
    await expect(intruder.receive()).rejects.toThrow();
    intruder.close();
    expect(await sc.ping()).toBeLessThan(1000);
  });
});
