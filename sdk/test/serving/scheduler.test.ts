/**
 * The local engine's continuous batching: requests for different adapters (and the base) join the running batch
 * between decode steps and leave when done, in one session run per step; every request's greedy tokens equal
 * transformers + PEFT generate with its adapter, computed in the same run. Overload, cancellation, LRU eviction of
 * adapters and run-time load/unload behave as the serving issue writes them.
 */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { AdapterError, OverloadedError } from "../../src/errors.js";
import type { GenerationResult } from "../../src/generation/generate-options.js";
import { LocalEngine } from "../../src/serving/local-engine.js";
import { MIXED_IDS as IDS, MIXED_NEW_TOKENS as NEW, MIXED_ROWS as ROWS, buildMixedReference, type MixedReference } from "../helpers/mixed-fixture.js";
import { limit } from "../helpers/timeouts.js";

let ref: MixedReference;

beforeAll(async () => {
  ref = (await buildMixedReference()).llama; // shared with sdk/test/generation/mixed-batch.test.ts
}, limit(900_000));

async function engine(options: Parameters<typeof LocalEngine.start>[1] = {}): Promise<LocalEngine> {
  const e = await LocalEngine.start(join(ref.dir, "onnx"), options);
  await e.loadAdapter("a0", join(ref.dir, "a0"));
  await e.loadAdapter("a1", join(ref.dir, "a1"));
  return e;
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("continuous batching (LocalEngine)", () => {
  it("requests joining and leaving a running batch, each with its adapter, get transformers + PEFT's greedy tokens", async () => {
    const e = await engine();
    try {
      let maxBatch = 0;
      const watch = setInterval(() => (maxBatch = Math.max(maxBatch, e.stats().batchSize)), 1);
      // Staggered arrivals and different lengths: later requests join mid-flight; shorter ones leave first.
      const lengths = [NEW, 10, NEW, 5, NEW, 16, 3, NEW];
      const runs: Promise<GenerationResult>[] = [];
      for (const [i, n] of lengths.entries()) {
        const row = i % IDS.length;
        runs.push(e.generate({ prompt: IDS[row]!, options: { adapter: ROWS[row]!, maxNewTokens: n, temperature: 0, ignoreEos: true } }).result);
        await delay(i % 3 === 0 ? 15 : 2);
      }
      const results = await Promise.all(runs);
      clearInterval(watch);
      for (const [i, r] of results.entries()) {
        const row = i % IDS.length;
        expect(r.tokens, `request ${i} (${ROWS[row] ?? "base"}, ${lengths[i]} tokens)`).toEqual(ref.greedy[row]!.slice(0, lengths[i]));
      }
      console.log(`largest running batch seen: ${maxBatch}; decode steps: ${e.stats().stepsTotal}`);
      expect(maxBatch).toBeGreaterThan(1);
      // Fewer decode steps than the requests' tokens added up: they shared steps.
      expect(e.stats().stepsTotal).toBeLessThan(lengths.reduce((a, b) => a + b, 0));
      expect(e.stats().batchSize).toBe(0);
      expect(e.stats().queueDepth).toBe(0);
    } finally {
      await e.close();
    }
  });

  it("a full queue is an immediate OverloadedError; the running request is unaffected", async () => {
    const e = await engine({ maxBatchSize: 1, maxQueue: 0 });
    try {
      const stream = e.generate({ prompt: IDS[0]!, options: { adapter: "a0", maxNewTokens: 100, temperature: 0, ignoreEos: true } });
      const it = stream[Symbol.asyncIterator]();
      await it.next(); // the first request is running now
      await expect(e.generate({ prompt: IDS[1]!, options: { maxNewTokens: 4 } }).result).rejects.toBeInstanceOf(OverloadedError);
      expect((await stream.result).tokens.slice(0, NEW)).toEqual(ref.greedy[0]);
      expect(e.stats().requestsRejected).toBe(1);
    } finally {
      await e.close();
    }
  });

  it("cancelling a request frees its slot at the next step; the others run on", async () => {
    const e = await engine({ maxBatchSize: 2 });
    try {
      const ac = new AbortController();
      const stream = e.generate({ prompt: IDS[2]!, options: { adapter: "a1", maxNewTokens: 100, temperature: 0, ignoreEos: true, signal: ac.signal } });
      const other = e.generate({ prompt: IDS[0]!, options: { adapter: "a0", maxNewTokens: NEW, temperature: 0, ignoreEos: true } }).result;
      let seen = 0;
      for await (const _ of stream) if (++seen === 3) ac.abort();
      const cancelled = await stream.result;
      expect(cancelled.finishReason).toBe("abort");
      expect(cancelled.tokens.length).toBeLessThan(10);
      expect(cancelled.tokens).toEqual(ref.greedy[2]!.slice(0, cancelled.tokens.length));
      expect((await other).tokens).toEqual(ref.greedy[0]);
      const after = await e.generate({ prompt: IDS[1]!, options: { maxNewTokens: NEW, temperature: 0, ignoreEos: true } }).result;
      expect(after.tokens).toEqual(ref.greedy[1]);
    } finally {
      await e.close();
    }
  });

  it("holds at most maxLoras adapters in the session (LRU) and stays exact; load and unload at run time", async () => {
    const e = await engine({ maxLoras: 1 });
    try {
      const both = await Promise.all([0, 2, 3].map((row) => e.generate({ prompt: IDS[row]!, options: { adapter: ROWS[row]!, maxNewTokens: NEW, temperature: 0, ignoreEos: true } }).result));
      expect(both.map((r) => r.tokens)).toEqual([ref.greedy[0], ref.greedy[2], ref.greedy[3]]);
      expect(e.stats().adaptersActive).toBeLessThanOrEqual(1);
      await e.loadAdapter("again", join(ref.dir, "a1"));
      expect(e.models().adapters).toContain("again");
      const r = await e.generate({ prompt: IDS[2]!, options: { adapter: "again", maxNewTokens: NEW, temperature: 0, ignoreEos: true } }).result;
      expect(r.tokens).toEqual(ref.greedy[2]);
      await e.unloadAdapter("again");
      await expect(e.generate({ prompt: IDS[2]!, options: { adapter: "again" } }).result).rejects.toBeInstanceOf(AdapterError);
    } finally {
      await e.close();
    }
  });
});
