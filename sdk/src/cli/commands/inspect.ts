import type { Command } from "commander";
import { summariseWeights, type WeightsSummary } from "../../formats/summary.js";
import { inspectAdapter } from "./inspect-adapter.js";

/** `loraport inspect <path> [--json]`: tensor names, dtypes, shapes, byte sizes and metadata of a weights file. */
export function registerInspect(program: Command): void {
  program
    .command("inspect")
    .description("list the tensors (name, dtype, shape, bytes) and metadata of a safetensors file, sharded folder or torch checkpoint")
    .argument("<path>", "a .safetensors file, a model folder / *.safetensors.index.json, or a torch .pt/.bin checkpoint")
    .option("--json", "print one JSON object: {format, tensors: [{name, dtype, shape}], metadata}")
    .action(async (path: string, opts: { json?: boolean }) => {
      // Adapters (PEFT folder, loralib checkpoint) are also described: per-module rank and scaling, targets, counts.
      const adapter = await inspectAdapter(path);
      if (adapter?.replacesWeightsListing) {
        process.stdout.write(opts.json ? `${JSON.stringify({ format: "peft-adapter", adapter: adapter.json })}\n` : adapter.text);
        return;
      }
      const summary = await summariseWeights(path);
      if (opts.json) process.stdout.write(`${JSON.stringify({ ...weightsJson(summary), ...(adapter ? { adapter: adapter.json } : {}) })}\n`);
      else process.stdout.write(weightsTable(path, summary) + (adapter ? adapter.text : ""));
    });
}

/** The `--json` shape, exactly as documented. */
export function weightsJson(s: WeightsSummary): { format: string; tensors: Array<{ name: string; dtype: string; shape: number[] }>; metadata: Record<string, string> } {
  return { format: s.format, tensors: s.tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })), metadata: { ...s.metadata } };
}

export function weightsTable(path: string, s: WeightsSummary): string {
  const total = s.tensors.reduce((a, t) => a + t.byteLength, 0);
  const lines = [`${path}: ${s.format}, ${s.tensors.length} tensors, ${formatBytes(total)}${s.files.length > 1 ? ` in ${s.files.length} shards` : ""}`];
  for (const [k, v] of Object.entries(s.metadata)) lines.push(`  metadata ${k} = ${JSON.stringify(v)}`);
  const rows = [["name", "dtype", "shape", "bytes"], ...s.tensors.map((t) => [t.name, t.dtype, `[${t.shape.join(", ")}]`, String(t.byteLength)])];
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) lines.push(`  ${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padEnd(widths[1]!)}  ${r[2]!.padEnd(widths[2]!)}  ${r[3]!.padStart(widths[3]!)}`);
  return `${lines.join("\n")}\n`;
}

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${i === 0 ? x : x.toFixed(1)} ${units[i]}`;
}
