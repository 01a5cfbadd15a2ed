/**
 * `loraport export` + `loraport run` end to end (CLI from source, real sidecar, real onnxruntime-node):
 * last-position logits vs PyTorch + PEFT computed in Python in the same run; clear errors for a base/adapter mismatch.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const tmp = tempDir("loraport-cli-run-");
afterAll(() => tmp.cleanup());

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  const entry = `import(${JSON.stringify(join(REPO_ROOT, "sdk/src/cli/main.ts"))}).then(async (m) => { process.exitCode = await m.run(process.argv.slice(1)); })`;
  try {
    const stdout = execFileSync(process.execPath, ["--import", "tsx", "-e", entry, "--", ...args], { cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: limit(180_000) });
    return { code: 0, stdout, stderr: "" };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, stdout: e.stdout, stderr: e.stderr };
  }
}

interface Ref { base: number[]; adapted: number[]; loralib: number[] }
let ref: Ref;
const IDS = [1, 5, 9, 40, 7];

beforeAll(() => {
  ref = runPythonJson<Ref>(`
import sys, json, torch
from peft import LoraConfig, get_peft_model
from loraport_sidecar.reference import tiny_models as t
d = sys.argv[1]
ids = torch.tensor([${IDS.join(",")}]).unsqueeze(0)
base = t.gpt2(); t.save(base, d + "/base")
with torch.no_grad(): b = base(input_ids=ids).logits[0, -1].tolist()
torch.manual_seed(7)
pm = get_peft_model(t.gpt2(), LoraConfig(r=4, lora_alpha=16, target_modules=["c_attn"], init_lora_weights=False, fan_in_fan_out=True)).eval()
pm.save_pretrained(d + "/adapter")
with torch.no_grad(): a = pm(input_ids=ids).logits[0, -1].tolist()
lm = get_peft_model(t.llama(), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)); lm.save_pretrained(d + "/llama-adapter")
# A loralib checkpoint as the paper's code writes it: MergedLinear on c_attn (q and v), r 4, alpha 32, DDP prefix.
from loraport_sidecar.reference.loralib_wiring import apply_loralib
ll = apply_loralib(t.gpt2(), targets=["c_attn"], r=4, lora_alpha=32, enable_lora=[True, False, True])
g = torch.Generator().manual_seed(5)
with torch.no_grad():
    for n, p in ll.named_parameters():
        if "lora_" in n: p.copy_(torch.randn(p.shape, generator=g) * 0.1)
torch.save({"module." + k: v for k, v in ll.state_dict().items() if "lora_" in k}, d + "/loralib.pt")
ll.eval()  # loralib merges on eval
with torch.no_grad(): l = ll(input_ids=ids).logits[0, -1].tolist()
print(json.dumps({"base": b, "adapted": a, "loralib": l}))
`, [tmp.dir]);
}, limit(120_000));

function maxAbs(a: readonly number[], b: readonly number[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
}

describe("loraport export / run", () => {
  it("exports with adapter inputs and runs base and adapter; logits match PEFT", () => {
    const ex = cli(["export", "--base", join(tmp.dir, "base"), "--out", join(tmp.dir, "ai"), "--json"]);
    expect(ex.stderr).toBe("");
    expect(JSON.parse(ex.stdout).loraModules).toBe(2);
    const ids = IDS.join(",");
    const base = JSON.parse(cli(["run", "--model", join(tmp.dir, "ai"), "--ids", ids, "--json", "--provider", "cpu"]).stdout) as { logits: number[]; provider: string };
    expect(base.provider).toBe("cpu");
    const withAdapter = JSON.parse(cli(["run", "--model", join(tmp.dir, "ai"), "--adapter", join(tmp.dir, "adapter"), "--ids", ids, "--json", "--provider", "cpu"]).stdout) as { logits: number[] };
    const eb = maxAbs(base.logits, ref.base);
    const ea = maxAbs(withAdapter.logits, ref.adapted);
    console.log(`cli run: base max abs ${eb.toExponential(2)}, adapter max abs ${ea.toExponential(2)}`);
    expect(eb).toBeLessThanOrEqual(1e-4);
    expect(ea).toBeLessThanOrEqual(1e-4);
    expect(maxAbs(ref.adapted, ref.base)).toBeGreaterThan(1e-3);
  });

  it("runs a loralib checkpoint (MergedLinear) converted in TS; logits match loralib", () => {
    const res = cli(["run", "--model", join(tmp.dir, "ai"), "--adapter", join(tmp.dir, "loralib.pt"), "--lora-r", "4", "--alpha", "32", "--enable-lora", "q,v", "--ids", IDS.join(","), "--json", "--provider", "cpu"]);
    expect(res.code).toBe(0);
    const e = maxAbs((JSON.parse(res.stdout) as { logits: number[] }).logits, ref.loralib);
    console.log(`cli run loralib: max abs ${e.toExponential(2)}`);
    expect(e).toBeLessThanOrEqual(1e-4);
    expect(maxAbs(ref.loralib, ref.base)).toBeGreaterThan(1e-3);
  });

  it("exports merged and runs it", () => {
    const ex = cli(["export", "--base", join(tmp.dir, "base"), "--out", join(tmp.dir, "merged"), "--mode", "merged", "--adapter", join(tmp.dir, "adapter")]);
    expect(ex.code).toBe(0);
    const res = JSON.parse(cli(["run", "--model", join(tmp.dir, "merged"), "--ids", IDS.join(","), "--json", "--provider", "cpu"]).stdout) as { logits: number[] };
    expect(maxAbs(res.logits, ref.adapted)).toBeLessThanOrEqual(1e-4);
  });

  it("fails with one clear line for a base/adapter mismatch and bad input", () => {
    const bad = cli(["run", "--model", join(tmp.dir, "ai"), "--adapter", join(tmp.dir, "llama-adapter"), "--ids", "1,2", "--provider", "cpu"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/model\.layers\.0\.self_attn\.q_proj: .*no LoRA inputs/);
    const ids = cli(["run", "--model", join(tmp.dir, "ai"), "--ids", "1,x", "--provider", "cpu"]);
    expect(ids.code).toBe(1);
    expect(ids.stderr).toMatch(/--ids/);
    const nomodel = cli(["run", "--model", join(tmp.dir, "nope"), "--ids", "1"]);
    expect(nomodel.code).toBe(1);
    expect(nomodel.stderr).toMatch(/loraport-onnx\.json: no such file/);
    const noadapter = cli(["export", "--base", join(tmp.dir, "base"), "--out", join(tmp.dir, "m2"), "--mode", "merged"]);
    expect(noadapter.code).toBe(1);
    expect(noadapter.stderr).toMatch(/needs --adapter/);
  });
});
