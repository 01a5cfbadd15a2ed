/**
 * Big tensors through the session's private /dev/shm folder, with a real sidecar: both directions, every file
 * taken off its `t-` name once read (recycled as a free file, within the pool's cap, or unlinked), bad file names
 * and sizes refused by the sidecar, and frames when it is turned off.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Dealer } from "zeromq";
import { decode, encode } from "@msgpack/msgpack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Sidecar } from "../../src/bridge/index.js";
import { mmapAvailable } from "../../src/formats/mmap.js";
import { tensor } from "../../src/tensor/index.js";
import { bytesOf } from "../../src/tensor/tensor-impl.js";

/** Shared memory is used where /dev/shm takes a folder and the native helper is built (else frames, tested elsewhere). */
const usable = process.platform === "linux" && mmapAvailable() && (() => {
  try {
    rmSync(mkdtempSync("/dev/shm/loraport-probe-"), { recursive: true });
    return true;
  } catch {
    return false;
  }
})();
const MiB = 2 ** 20;
let sc: Sidecar;

beforeAll(async () => {
  sc = await Sidecar.start({ validateResults: true, sharedMemoryThreshold: MiB });
});
afterAll(async () => {
  await sc?.close();
});

/** Files named in a message and not yet read (`t-`): none may be left. Free (`f-`) and in-use (`u-`) files may be. */
function sentNames(dir: string): string[] {
  return readdirSync(dir).filter((n) => !/^[fu]-[0-9a-f]{24}$/.test(n));
}

function sameBytes(a: Parameters<typeof bytesOf>[0], b: Parameters<typeof bytesOf>[0]): boolean {
  return Buffer.from(bytesOf(a)).equals(Buffer.from(bytesOf(b)));
}

/** Send each message from a raw client; the reply headers, and the reply frames in `frames`. */
async function raw(messages: Uint8Array[][], frames: Buffer[][] = []): Promise<Array<Record<string, unknown>>> {
  const sock = new Dealer({ linger: 0, receiveTimeout: 10_000 });
  sock.connect(sc.endpoint!);
  const out: Array<Record<string, unknown>> = [];
  try {
    for (const m of messages) {
      await sock.send(m);
      const [head, ...rest] = await sock.receive();
      out.push(decode(head!) as Record<string, unknown>);
      frames.push(rest);
    }
  } finally {
    sock.close();
  }
  return out;
}

describe.runIf(usable)("tensors through shared memory", () => {
  it("big tensors go both ways through the private folder and come back unchanged; no file is left", async () => {
    const dir = sc.sharedMemoryDir!;
    expect(dir).toMatch(/^\/dev\/shm\/loraport-/);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const inputs = {
      f32: tensor("F32", [1024, 1024], Float32Array.from({ length: 1024 * 1024 }, (_, i) => i * 0.5 - 7)),
      bf16: tensor("BF16", [3], new Uint16Array([0x3f80, 0xc000, 0x7fc0])), // small: a frame
      i64: tensor("I64", [200_000], BigInt64Array.from({ length: 200_000 }, (_, i) => BigInt(i) * 3n - 5n)),
    };
    const { result, named } = await sc.call("echo", {}, inputs);
    expect(result.count).toBe(3);
    for (const [k, t] of Object.entries(inputs)) {
      expect(named[k]!.shape, k).toEqual(t.shape);
      expect(sameBytes(named[k]!, t), k).toBe(true);
    }
    // The 4 MiB reply is a mapping of a file the sidecar wrote, now ours (u-, in use) until the bytes are garbage.
    const maps = readFileSync("/proc/self/maps", "utf8");
    expect(maps).toMatch(new RegExp(`${dir}/u-[0-9a-f]{24}`));
    expect(sentNames(dir)).toEqual([]);
  });

  it("the sidecar reads a file named in a descriptor (Node → Python through shm) and unlinks it", async () => {
    const dir = sc.sharedMemoryDir!;
    const name = "t-0123456789abcdef01234567";
    const values = Float32Array.from({ length: 300_000 }, (_, i) => Math.sin(i));
    writeFileSync(join(dir, name), Buffer.from(values.buffer), { mode: 0o600 });
    const frames: Buffer[][] = [];
    const [reply] = await raw([[encode({ v: 1, id: 1, kind: "request", method: "echo", params: {}, tensors: [{ dtype: "F32", shape: [300_000], nbytes: 1_200_000, shm: true }] }), Buffer.from(name)]], frames);
    expect(reply).toMatchObject({ id: 1, kind: "result", result: { nbytes: 1_200_000, count: 1 }, tensors: [{ shm: true }] });
    expect(existsSync(join(dir, name))).toBe(false);
    // The echo came back through a new file: a raw client reads and unlinks it itself.
    const back = join(dir, frames[0]![0]!.toString());
    expect(readFileSync(back).equals(Buffer.from(values.buffer))).toBe(true);
    rmSync(back);
  });

  it("bad shared-memory frames are ProtocolErrors naming the problem; the sidecar stays up and no file is left", async () => {
    const dir = sc.sharedMemoryDir!;
    writeFileSync(join(dir, "t-aaaaaaaaaaaaaaaaaaaaaaaa"), Buffer.alloc(10));
    const desc = (nbytes: number) => ({ v: 1, id: 2, kind: "request", method: "echo", params: {}, tensors: [{ dtype: "U8", shape: [nbytes], nbytes, shm: true }] });
    const replies = await raw([
      [encode(desc(8)), Buffer.from("../../../etc/passwd")],
      [encode(desc(8)), Buffer.from("t-ffffffffffffffffffffffff")],
      [encode(desc(8)), Buffer.from("t-aaaaaaaaaaaaaaaaaaaaaaaa")],
    ]);
    const errors = replies.map((r) => r["error"] as { type: string; message: string });
    expect(errors.every((e) => e.type === "Protocol")).toBe(true);
    expect(errors[0]!.message).toContain("not a file name of the form t-<24 hex digits>");
    expect(errors[1]!.message).toMatch(/cannot open shared-memory file t-f{24}/);
    expect(errors[2]!.message).toContain("has 10 bytes, descriptor says 8");
    expect(sentNames(dir)).toEqual([]);
    expect(await sc.ping()).toBeLessThan(1000);
  });

  it("reuses free files both ways, of other sizes too, within the pool's cap", async () => {
    const pooled = await Sidecar.start({ sharedMemoryThreshold: MiB, sharedMemoryPoolBytes: 12 * MiB });
    try {
      const dir = pooled.sharedMemoryDir!;
      // Each file (inode) and the free names it has had: a file freed under two names was claimed and used again.
      const freeNames = new Map<number, Set<string>>();
      const look = () => {
        for (const n of readdirSync(dir).filter((x) => x.startsWith("f-"))) {
          const st = statSync(join(dir, n), { throwIfNoEntry: false });
          if (st) freeNames.set(st.ino, (freeNames.get(st.ino) ?? new Set()).add(n));
        }
      };
      const sizes = [3, 2, 2.5, 3, 1.5, 2, 3, 2.5].map((m) => Math.round(m * MiB / 4));
      for (const [i, n] of sizes.entries()) {
        const t = tensor("F32", [n], Float32Array.from({ length: n }, (_, j) => j * 0.25 + i));
        const { tensors } = await pooled.call("echo", {}, [t]);
        expect(sameBytes(tensors[0]!, t), `transfer ${i}`).toBe(true);
        look();
        globalThis.gc?.();
      }
      const reused = [...freeNames.values()].filter((names) => names.size >= 2).length;
      console.log(`shared memory: 16 transfers, ${freeNames.size} files seen free, ${reused} of them freed again after reuse`);
      expect(reused).toBeGreaterThan(0);
      const free = readdirSync(dir).filter((n) => n.startsWith("f-")).reduce((sum, n) => sum + statSync(join(dir, n)).size, 0);
      expect(free).toBeLessThanOrEqual(12 * MiB);
      expect(sentNames(dir)).toEqual([]);
    } finally {
      await pooled.close();
    }
  });

  it("close() removes the folder; with no pool every file goes once read; with the threshold at Infinity everything travels as frames", async () => {
    const other = await Sidecar.start({ sharedMemoryThreshold: Infinity });
    const own = await Sidecar.start({ sharedMemoryThreshold: MiB, sharedMemoryPoolBytes: 0 });
    try {
      expect(other.sharedMemoryDir).toBeUndefined();
      const big = tensor("F32", [600_000], Float32Array.from({ length: 600_000 }, (_, i) => i));
      const { tensors } = await other.call("echo", {}, [big]);
      expect(sameBytes(tensors[0]!, big)).toBe(true);
      const dir = own.sharedMemoryDir!;
      // With no pool, every file goes once read (ours at once, the sidecar's too): nothing stays in the folder.
      const { tensors: back } = await own.call("echo", {}, [big]);
      expect(sameBytes(back[0]!, big)).toBe(true);
      expect(readdirSync(dir)).toEqual([]);
      expect(existsSync(dir)).toBe(true);
      await own.close();
      expect(existsSync(dir)).toBe(false);
    } finally {
      await other.close();
      await own.close();
    }
  });
});
