/**
 * Mixed-adapter batches: one ONNX Runtime run in which every row uses its own adapter (or the base) through the
 * graph's factor tables. Each row equals PEFT's mixed-batch forward (`adapter_names=[...]`) and that adapter run alone;
 * a mixed greedy `generateBatch` gives each row the tokens transformers + PEFT generate gives it alone.
 */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { readPeftAdapter } from "../../src/adapter/peft-io.js";
import { generateBatch } from "../../src/generation/generate.js";
import { LoraModel } from "../../src/runtime/lora-model.js";
import { MIXED_IDS as IDS, MIXED_NEW_TOKENS as NEW, MIXED_ROWS as ROWS, buildMixedReference, type MixedReference } from "../helpers/mixed-fixture.js";
import { limit } from "../helpers/timeouts.js";

const TOL = 1e-4;

let ref: Record<string, MixedReference>;

beforeAll(async () => {
  ref = await buildMixedReference(); // shared with sdk/test/serving/scheduler.test.ts
}, limit(900_000));

describe.each(["llama", "gpt2"])("%s", (family) => {
  async function load(): Promise<LoraModel> {
    const r = ref[family]!;
    const model = await LoraModel.load(join(r.dir, "onnx"));
    for (const a of ["a0", "a1"]) await model.registerAdapter(a, (await readPeftAdapter(join(r.dir, a))).adapter);
    return model;
  }

  it("one run, a different adapter per row: equals PEFT adapter_names and each adapter alone", async () => {
    await using model = await load();
    const mixed = (await model.run({ inputIds: IDS }, { adapters: ROWS })).logits.data as Float32Array;
    const want = ref[family]!.mixedLogits;
    let worst = 0, at = -1;
    mixed.forEach((v, i) => {
      const d = Math.abs(v - want[i]!);
      if (d > worst) [worst, at] = [d, i];
    });
    console.log(`${family} mixed batch vs PEFT adapter_names: max |Δlogit| ${worst.toExponential(2)} at ${at}`);
    expect(worst).toBeLessThan(TOL);
    const per = mixed.length / IDS.length;
    for (const [b, a] of ROWS.entries()) {
      const alone = (await model.run({ inputIds: [IDS[b]!] }, { adapter: a })).logits.data as Float32Array;
      let d = 0;
      alone.forEach((v, i) => (d = Math.max(d, Math.abs(v - mixed[b * per + i]!))));
      expect(d, `row ${b} (${a ?? "base"}) vs alone`).toBeLessThan(TOL);
    }
  });

  it("mixed greedy generation: each row's tokens equal transformers + PEFT generate with its adapter", async () => {
    await using model = await load();
    const res = await generateBatch(model, IDS, { adapters: ROWS, maxNewTokens: NEW, temperature: 0, ignoreEos: true }, () => undefined);
    expect(res.map((r) => r.tokens)).toEqual(ref[family]!.greedy);
    expect(new Set(ref[family]!.greedy.map((g) => g.join(","))).size).toBeGreaterThan(2); // the adapters differ
  });
});
