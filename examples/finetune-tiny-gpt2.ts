/**
 * Fine-tune a LoRA adapter on a small GPT-2 from TypeScript, and chart the loss.
 *
 *   npx tsx examples/finetune-tiny-gpt2.ts                 # ~300 steps, a few seconds of training on CPU
 *   npx tsx examples/finetune-tiny-gpt2.ts --steps 40 --out /tmp/ft
 *
 * The base is loraport's seeded tiny GPT-2 (2 layers, width 64, a 128-token vocabulary) built from its config —
 * its weights are random, so everything it learns here comes from the adapter. The text is
 * examples/data/tiny-corpus.txt, one token per ASCII character. On first run the sidecar exports the train-step
 * artifact (about a minute) into the cache folder (default .loraport-cache/finetune-tiny-gpt2, or --cache DIR).
 *
 * Writes into --out (default .loraport-cache/finetune-tiny-gpt2/run): loss-curve.svg, losses.json and the trained
 * adapter as a PEFT folder (adapter/), which PEFT loads with PeftModel.from_pretrained.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Sidecar, Trainer, type TrainExample } from "loraport";

const { values: args } = parseArgs({
  options: {
    steps: { type: "string", default: "300" },
    lr: { type: "string", default: "1e-2" },
    cache: { type: "string", default: ".loraport-cache/finetune-tiny-gpt2" },
    out: { type: "string" },
  },
});
const here = import.meta.dirname;
const cache = resolve(args.cache!);
const outDir = resolve(args.out ?? join(cache, "run"));
const artifact = join(cache, "artifact");
const steps = Number(args.steps);
const lr = Number(args.lr);

// ---- data: the corpus as ASCII ids, cut into overlapping windows --------------------------------------------
const VOCAB = 128;
const WINDOW = 48;
const text = readFileSync(join(here, "data/tiny-corpus.txt"), "utf8").replace(/\s+/g, " ");
const ids = Array.from(text, (ch) => Math.min(ch.charCodeAt(0), VOCAB - 1));
const windows: TrainExample[] = [];
for (let i = 0; i + WINDOW <= ids.length; i += WINDOW / 2) windows.push({ input_ids: ids.slice(i, i + WINDOW) });
const heldOut = windows.filter((_, i) => i % 10 === 9);
const train = windows.filter((_, i) => i % 10 !== 9);

// ---- the artifact (exported once, then reused) ------------------------------------------------------------------
if (!existsSync(join(artifact, "loraport-train.json"))) {
  console.log(`exporting the train-step artifact to ${artifact} (once) …`);
  mkdirSync(cache, { recursive: true });
  await using sc = await Sidecar.start(); // closed at the end of this block, also on an error
  const res = await sc.exportTrainStep({ builtin: "gpt2" }, artifact, { targetModules: ["c_attn", "c_fc"], r: 8, alpha: 16 });
  console.log(`  done in ${res.seconds.toFixed(0)} s; step-1 gradients vs PyTorch: max rel ${res.gradMaxRelErr.toExponential(1)}`);
}

// ---- train ---------------------------------------------------------------------------------------------------------
// `await using`: the trainer's worker thread ends with the script, also when a step throws.
await using trainer = await Trainer.load(artifact, { executionProviders: ["cpu"] });
const before = await trainer.evaluate(heldOut);
const losses: number[] = [];
const evals: { step: number; loss: number }[] = [{ step: 0, loss: before }];
const t0 = performance.now();
await trainer.fit(train, {
  maxSteps: steps,
  batchSize: 8,
  lr,
  lrSchedule: { kind: "cosine", warmupSteps: Math.min(10, Math.floor(steps / 10)) },
  evalData: heldOut,
  evalEvery: Math.max(1, Math.floor(steps / 10)),
  onProgress: (e) => {
    losses.push(e.loss);
    if (e.done % 20 === 0 || e.done === e.totalSteps) console.log(`step ${e.done}/${e.totalSteps}  loss ${e.loss.toFixed(3)}  ${Math.round(e.tokensPerSecond)} tok/s`);
  },
  onEval: (e) => evals.push(e),
});
const seconds = (performance.now() - t0) / 1000;
const after = await trainer.evaluate(heldOut);
mkdirSync(outDir, { recursive: true });
await trainer.saveAdapter(join(outDir, "adapter"));

writeFileSync(join(outDir, "losses.json"), JSON.stringify({ train: losses, eval: evals, heldOutBefore: before, heldOutAfter: after }, null, 1));
writeFileSync(join(outDir, "loss-curve.svg"), lossChart(losses, evals));
console.log(`\n${steps} steps in ${seconds.toFixed(1)} s; held-out loss ${before.toFixed(3)} → ${after.toFixed(3)} (uniform guess: ${Math.log(VOCAB).toFixed(3)})`);
console.log(`wrote ${join(outDir, "loss-curve.svg")}, losses.json and adapter/ (a PEFT folder)`);

/** A plain SVG line chart: training loss per step, held-out loss as points. */
function lossChart(train: readonly number[], held: readonly { step: number; loss: number }[]): string {
  const W = 640, H = 360, L = 56, R = 16, T = 24, B = 40;
  const all = [...train, ...held.map((e) => e.loss)];
  const lo = Math.floor(Math.min(...all) * 10) / 10;
  const hi = Math.ceil(Math.max(...all) * 10) / 10;
  const n = Math.max(train.length, 1);
  const x = (s: number): number => L + ((W - L - R) * s) / n;
  const y = (v: number): number => T + ((H - T - B) * (hi - v)) / Math.max(hi - lo, 1e-9);
  const line = train.map((v, i) => `${x(i + 1).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const ticks = Array.from({ length: 5 }, (_, i) => lo + ((hi - lo) * i) / 4);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${L}" y="16" font-size="13">LoRA fine-tuning of a tiny GPT-2 with loraport (loss per step)</text>
${ticks.map((v) => `<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/><text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(2)}</text>`).join("\n")}
<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>
<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">optimizer step (of ${train.length})</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${line}"/>
${held.map((e) => `<circle cx="${x(e.step).toFixed(1)}" cy="${y(e.loss).toFixed(1)}" r="3.5" fill="#d62728"><title>held-out loss ${e.loss.toFixed(3)} at step ${e.step}</title></circle>`).join("\n")}
<text x="${W - R}" y="${T + 12}" text-anchor="end" fill="#1f77b4">training loss</text>
<text x="${W - R}" y="${T + 26}" text-anchor="end" fill="#d62728">held-out loss</text>
</svg>
`;
}
