/**
 * `--engine torch` from TypeScript: the CLI on a real Hugging Face folder (tiny GPT-2 + byte-level BPE tokenizer,
 * text lines tokenized here) with 2 torchrun ranks; the adapter is checked in PEFT by Python in the same run.
 * The parity figures (2 ranks vs 1, FSDP vs DDP, killed rank, resume) are in sidecar/tests/test_train_torch.py;
 * torch vs ORT is in trainer.test.ts (it shares that file's exported artifact).
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CancelledError } from "../../src/errors.js";
import { run as runCli } from "../../src/cli/main.js";
import { shuffledOrder } from "../../src/training/data.js";
import { TorchTrainer } from "../../src/training/index.js";
import { runPython, runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { seededExamples } from "./helpers.js";

const tmp = tempDir("loraport-torch-engine-");
const base = join(tmp.dir, "tiny-gpt2");
const VOCAB = 300;

/** Live processes whose command line mentions `text`. */
function processesWith(text: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      const state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
      if (cmd.includes(text) && state !== "Z") found.push(Number(pid));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

async function captureStderr(fn: () => Promise<number>): Promise<{ code: number; err: string }> {
  const errs: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
  try {
    return { code: await fn(), err: errs.join("") };
  } finally {
    process.stderr.write = write;
  }
}

beforeAll(() => {
  runPython(`
import sys
from loraport_sidecar.reference import tiny_models, tiny_tokenizer
tiny_models.save(tiny_models.gpt2(vocab_size=${VOCAB}), sys.argv[1])
tiny_tokenizer.train_byte_bpe(sys.argv[1], ${VOCAB})`, [base]);
}, limit(120_000));

afterAll(() => tmp.cleanup());

describe("--engine torch", () => {
  it("the Python side shuffles exactly like data.ts (same order for both engines)", () => {
    const py = runPythonJson<number[][]>(`
import json
from loraport_sidecar.train_torch.data import shuffled_order
print(json.dumps([shuffled_order(n, s) for n, s in ((29, 3000009), (100, 0), (7, 4294967295), (50, 1000003 * 12345 + 2))]))`);
    expect(py).toEqual([shuffledOrder(29, 3000009), shuffledOrder(100, 0), shuffledOrder(7, 4294967295), shuffledOrder(50, (1000003 * 12345 + 2) >>> 0)]);
  });

  it("loraport train --engine torch --nproc-per-node 2: text JSONL in, a PEFT folder out that PEFT loads with every key and a lower loss", async () => {
    const data = join(tmp.dir, "text.jsonl");
    const texts = ["the quick brown fox jumps over the lazy dog", "a lora adapter learns a low rank update", "hello world, hello loraport", "tokens stream from the model"];
    writeFileSync(data, Array.from({ length: 16 }, (_, i) => JSON.stringify({ text: texts[i % 4] })).join("\n") + "\n");
    const out = join(tmp.dir, "cli-adapter");
    const lines: string[] = [];
    const log = console.log;
    console.log = (s: string) => void lines.push(s);
    let code: number;
    try {
      code = await runCli(["train", "--engine", "torch", "--base", base, "--data", data, "--out", out, "--steps", "6", "--lr", "1e-2", "--r", "4", "--alpha", "8",
        "--target-modules", "c_attn,c_fc", "--batch-size", "4", "--nproc-per-node", "2", "--json"]);
    } finally {
      console.log = log;
    }
    expect(code).toBe(0);
    const res = JSON.parse(lines.at(-1)!) as { engine: string; steps: number; losses: number[] };
    expect(res.engine).toBe("torch");
    expect(res.steps).toBe(6);
    const check = runPythonJson<{ missing: string[]; unexpected: string[]; before: number; after: number; r: number }>(`
import json, sys, torch
from peft import PeftModel, LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
base, out, data = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(base)
texts = [json.loads(l)["text"] for l in open(data) if l.strip()]
batch = tok(texts, return_tensors="pt", padding=True) if tok.pad_token else None
if batch is None:
    tok.pad_token = tok.eos_token
    batch = tok(texts, return_tensors="pt", padding=True)
labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
def loss(m):
    with torch.no_grad():
        return float(m(**batch, labels=labels).loss)
before = loss(AutoModelForCausalLM.from_pretrained(base).eval())
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out).eval()
saved = set(load_file(out + "/adapter_model.safetensors"))
want = {k.replace(".default", "") for k in model.state_dict() if "lora_" in k}
print(json.dumps({"missing": sorted(want - saved), "unexpected": sorted(saved - want), "before": before, "after": loss(model), "r": model.peft_config["default"].r}))`, [base, out, data]);
    console.log(`torch engine ×2 via CLI: PEFT loss on the data ${check.before.toFixed(4)} → ${check.after.toFixed(4)}`);
    expect(check.missing).toEqual([]);
    expect(check.unexpected).toEqual([]);
    expect(check.r).toBe(4);
    expect(check.after).toBeLessThan(check.before - 0.05);
  });

  it("an aborted fit stops every rank (CancelledError, no process left); bad sizes are typed errors before anything starts", async () => {
    const work = join(tmp.dir, "abort-run");
    const t = await TorchTrainer.load({ base: { builtin: "gpt2" }, lora: { r: 2, alpha: 4, targetModules: ["c_attn"] }, nprocPerNode: 2, workDir: work });
    const ctl = new AbortController();
    const run = t.fit(seededExamples(40, 128, 7), { maxSteps: 200, batchSize: 2, lr: 1e-3, signal: ctl.signal, onProgress: (e) => { if (e.done === 2) ctl.abort(); } });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    expect(t.step).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 1000));
    expect(processesWith(work)).toEqual([]);
    await t.close();

    const odd = await TorchTrainer.load({ base: { builtin: "gpt2" }, nprocPerNode: 2 });
    await expect(odd.fit(seededExamples(4, 128, 1), { batchSize: 3 })).rejects.toThrow(/batchSize: 3 is the global batch and must divide evenly over the 2 ranks/);
    await odd.close();
    await expect(TorchTrainer.load({ base: join(tmp.dir, "nowhere") })).rejects.toThrow(/nowhere\/config\.json: no such file/);
    const usage = await captureStderr(() => runCli(["train", "--engine", "torch", "--data", join(tmp.dir, "text.jsonl"), "--out", join(tmp.dir, "x")]));
    expect(usage.code).toBe(1);
    expect(usage.err).toMatch(/--engine torch needs --base <dir>/);
  });
});
