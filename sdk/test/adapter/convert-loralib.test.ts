/**
 * loralib → PEFT on a tiny GPT-2 with both a fused MergedLinear (c_attn, q and v) and a lora.Embedding (wte):
 * real loralib makes and merges the checkpoint; loraport converts it; real PEFT loads it without warnings and
 * merges to the same weights.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { convertLoralibToPeft } from "../../src/adapter/convert.js";
import { readLoralibCheckpoint } from "../../src/adapter/loralib.js";
import { writePeftAdapter } from "../../src/adapter/peft-io.js";
import { runCli } from "../helpers/cli.js";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const SCRIPT = readFileSync(join(import.meta.dirname, "fixtures/loralib_small.py"), "utf8");

describe("loralib MergedLinear + Embedding → PEFT", () => {
  const tmp = tempDir("loraport-loralib-");
  afterAll(() => tmp.cleanup());

  it("PEFT-merged equals loralib-merged exactly, no warnings; the embedding keeps rank r via rank_pattern", async () => {
    runPythonJson(SCRIPT, ["make", tmp.dir]);
    const ckpt = await readLoralibCheckpoint(join(tmp.dir, "loralib.pt"));
    expect(ckpt.strippedModulePrefix).toBe(true);
    const { adapter } = convertLoralibToPeft(ckpt, { r: 2, alpha: 4, enableLora: [true, false, true], fanInFanOut: true });
    expect(adapter.modules.get("transformer.wte")?.kind).toBe("embedding");
    expect(adapter.modules.get("transformer.h.0.attn.c_attn")?.B.shape).toEqual([96, 4]);
    expect(adapter.config.rank_pattern).toEqual({ "^transformer\\.wte": 2 });
    await writePeftAdapter(join(tmp.dir, "peft"), adapter);
    const r = runPythonJson<{ warnings: string[]; max_abs: number; modules: string[] }>(SCRIPT, ["check", tmp.dir, join(tmp.dir, "peft")]);
    console.log(`loralib tiny GPT-2 (MergedLinear + Embedding): max abs PEFT vs loralib merged ${r.max_abs.toExponential(2)} over ${r.modules.length} weights`);
    expect(r.warnings).toEqual([]);
    expect(r.modules).toHaveLength(3);
    expect(r.max_abs).toBeLessThanOrEqual(1e-6);
  }, limit(120_000));

  it("CLI: loraport convert --to peft with flags, then inspect describes the adapter", async () => {
    const { registerConvert } = await import("../../src/cli/commands/convert.js");
    const { registerInspect } = await import("../../src/cli/commands/inspect.js");
    const text = await runCli([registerConvert, registerInspect],
      ["convert", join(tmp.dir, "loralib.pt"), "--to", "peft", "--out", join(tmp.dir, "cli"), "--r", "2", "--alpha", "4", "--enable-lora", "q,v", "--fan-in-fan-out"],
      ["inspect", join(tmp.dir, "cli")]);
    expect(text).toContain("PEFT: r=4, lora_alpha=8 (scaling 2)");
    expect(text).toMatch(/transformer\.wte\s+embedding\s+2\s+4\s+2/);
    expect(text).toMatch(/transformer\.h\.0\.attn\.c_attn\s+conv1d\s+4\s+8\s+2/);
  });
});
