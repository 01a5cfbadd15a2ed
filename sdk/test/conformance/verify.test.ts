/**
 * `verify` on an adapter PEFT made on a tiny model (built and saved by PEFT in this run), and the runner's
 * handling of a missing published checkpoint (CI: an error naming the file; elsewhere: "not run" with where to get it).
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runConformance } from "../../src/conformance/runner.js";
import { runVerify } from "../../src/conformance/verify.js";
import type { ConformanceReport } from "../../src/conformance/report.js";
import { FileMissingError } from "../../src/errors.js";
import { runPython, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const tmp = tempDir("loraport-verify-test-");
let report: ConformanceReport;

beforeAll(async () => {
  runPython(`
import sys, torch
from peft import LoraConfig, get_peft_model
from loraport_sidecar.reference import tiny_models
base = tiny_models.gpt2(seed=3)
tiny_models.save(base, sys.argv[1])
pm = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True))
g = torch.Generator().manual_seed(5)
with torch.no_grad():
    for n, p in sorted(pm.named_parameters()):
        if "lora_" in n:
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
pm.save_pretrained(sys.argv[2])
`, [join(tmp.dir, "base"), join(tmp.dir, "adapter")]);
  report = await runVerify({ base: join(tmp.dir, "base"), adapter: join(tmp.dir, "adapter") });
}, limit(600_000));
afterAll(() => tmp.cleanup());

describe("loraport verify", () => {
  it("compares loraport's merge with PEFT's on every adapted module, within the F32 tolerance", () => {
    const merge = report.cases.find((p) => p.backend_pair[0] === "ts.merge")!;
    expect(merge.status, merge.reason ?? merge.notes.join("; ")).toBe("passed");
    expect(merge.per_module.length).toBe(2 * 3); // per layer: attn.c_attn, attn.c_proj and mlp.c_proj (PEFT suffix match)
    expect(merge.max_abs).toBeLessThanOrEqual(1e-5);
  });

  it("compares ONNX Runtime with PyTorch (PEFT) forward, or says why it could not", () => {
    for (const id of ["ort.adapter-inputs", "ort.merged"]) {
      const p = report.cases.find((x) => x.backend_pair[0] === id)!;
      if (p.status === "not_run") expect(p.reason).toMatch(/not available|not supported/);
      else expect(p.status, p.notes.join("; ")).toBe("passed");
    }
    expect(report.kind).toBe("verify");
  });

  it("refuses folders that are not a model or an adapter, naming them", async () => {
    await expect(runVerify({ base: join(tmp.dir, "adapter"), adapter: join(tmp.dir, "adapter") })).rejects.toThrow(/config\.json/);
    await expect(runVerify({ base: join(tmp.dir, "base"), adapter: join(tmp.dir, "base") })).rejects.toThrow(FileMissingError);
  });
});

describe("a missing published checkpoint", () => {
  it("fails the run under CI naming the file, and is 'not run' with its download location elsewhere", async () => {
    const empty = join(tmp.dir, "no-reference");
    await expect(runConformance({ referenceDir: empty, ci: true, only: ["published/roberta-base-mnli"] })).rejects.toThrow(/roberta_base_lora_mnli\.bin/);
    const r = await runConformance({ referenceDir: empty, ci: false, only: ["published/roberta-base-mnli"] });
    expect(r.cases.length).toBeGreaterThan(0);
    for (const p of r.cases) {
      expect(p.status).toBe("not_run");
      expect(p.reason).toMatch(/roberta_base_lora_mnli\.bin.*github\.com\/microsoft\/LoRA/);
    }
    expect(r.passed).toBe(true); // nothing failed; the lead sees the not-run count in totals
    expect(r.totals.not_run).toBe(r.cases.length);
  });
});
