/**
 * `npm run bench [-- --json] [--quick] [--only suite,...]`: runs the benchmark suites side by side with the
 * reference implementations in one run and prints tables and ratios. Never part of the test suite.
 */
import { SUITES } from "./suites.js";
import type { BenchResult } from "./types.js";

const args = process.argv.slice(2);
const json = args.includes("--json");
const quick = args.includes("--quick");
const onlyIdx = args.indexOf("--only");
const only = onlyIdx >= 0 ? new Set((args[onlyIdx + 1] ?? "").split(",")) : undefined;

const results: BenchResult[] = [];
for (const suite of SUITES) {
  if (only && !only.has(suite.name)) continue;
  if (!json) process.stderr.write(`bench: running ${suite.name}…\n`);
  results.push(await suite.run({ verbose: !json, quick }));
}

if (json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  for (const r of results) printResult(r);
}

function fmt(x: number): string {
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3);
}

function printResult(r: BenchResult): void {
  console.log(`\n## ${r.suite}`);
  if (r.conditions) console.log(Object.entries(r.conditions).map(([k, v]) => `${k}: ${v}`).join(" · "));
  const cols = [...new Set(r.rows.flatMap((row) => Object.keys(row.values)))];
  const table = [["measure", ...cols, "unit"], ...r.rows.map((row) => [row.name, ...cols.map((c) => (row.values[c] === undefined ? "" : fmt(row.values[c]!))), row.unit])];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((line) => line[i]!.length)));
  for (const [i, line] of table.entries()) {
    console.log(`| ${line.map((cell, j) => cell.padEnd(widths[j]!)).join(" | ")} |`);
    if (i === 0) console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  }
  for (const q of r.ratios) {
    const met = q.target === undefined ? "" : (q.higherIsBetter ? q.ratio >= q.target : q.ratio <= q.target) ? "  (meets target " : "  (MISSES target ";
    const target = q.target === undefined ? "" : `${met}${q.higherIsBetter ? "≥" : "≤"} ${q.target})`;
    console.log(`ratio ${q.name}: ${q.ratio.toFixed(2)}×${target}${q.note ? ` — ${q.note}` : ""}`);
  }
}
