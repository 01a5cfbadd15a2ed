/**
 * `npm run fuzz [-- --cases N] [--seed S] [--workers W] [--out DIR]`: the full fuzz run (default 100,000 cases)
 * over safetensors and torch files, every case in a child process. Prints a report (cases, typed errors,
 * successes, defects by kind and mutation family) and writes each defect's reproducer to DIR
 * (default fuzz-report/). Exits 1 when there is any defect.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { runFuzz } from "./runner.js";
import { buildSeeds } from "./seeds.js";

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const cases = Number(opt("cases", "100000"));
const runSeed = Number(opt("seed", "1"));
const workers = Number(opt("workers", "2"));
const outDir = resolve(opt("out", "fuzz-report"));

const tmp = mkdtempSync(join(tmpdir(), "loraport-fuzz-"));
try {
  const seedDir = join(tmp, "seeds");
  const seeds = await buildSeeds(seedDir);
  process.stderr.write(`fuzz: ${seeds.length} seeds, ${cases} cases, seed ${runSeed}, ${workers} workers\n`);
  let lastPrint = 0;
  const report = await runFuzz({
    cases, runSeed, seedDir, seeds, tmpDir: tmp, outDir, workers,
    onProgress: (done, total, snapshot) => {
      if (Date.now() - lastPrint > 10_000) {
        lastPrint = Date.now();
        const r = snapshot();
        process.stderr.write(`fuzz: ${done}/${total} (ok ${r.ok}, typed ${r.typed}, defects ${r.defects.length})\n`);
        // A long run can be stopped at any time and still leave its counts so far.
        mkdirSync(outDir, { recursive: true });
        writeFileSync(join(outDir, "report-partial.json"), JSON.stringify(r, null, 2));
      }
    },
  });
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "report.json"), JSON.stringify(report, null, 2));
  const lines = [
    `cases: ${report.cases}  successes: ${report.ok}  typed errors: ${report.typed}  defects: ${report.defects.length}`,
    `wall: ${(report.wallMs / 1000).toFixed(1)} s in ${report.children} child processes (${((report.cases / report.wallMs) * 1000).toFixed(0)} cases/s)`,
    "by mutation family (cases / ok / typed / defects):",
    ...Object.entries(report.byMutation)
      .sort((a, b) => b[1].cases - a[1].cases)
      .map(([f, s]) => `  ${f.padEnd(40)} ${String(s.cases).padStart(7)} ${String(s.ok).padStart(7)} ${String(s.typed).padStart(7)} ${String(s.defects).padStart(4)}`),
    ...report.defects.slice(0, 50).map((d) => `DEFECT case ${d.index} [${d.kind}] ${d.seed} / ${d.mutation}: ${d.detail}${d.reproducer ? ` → ${d.reproducer}` : ""}`),
    `report: ${join(outDir, "report.json")}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  process.exitCode = report.defects.length ? 1 : 0;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
