/**
 * The report's reading: loraport's pairs and the reference libraries' self-consistency pairs counted and shown
 * apart, the tolerance used (the quantity the tolerance bounds) per pair, the scope (cut bases) at the top, and
 * `conformance --report F` printing a summary and the paths instead of the whole table.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, describe, expect, it } from "vitest";
import { emitReport } from "../../src/cli/commands/conformance.js";
import { compareTensors } from "../../src/conformance/compare.js";
import { renderHtml, renderMarkdown } from "../../src/conformance/render.js";
import { pairRole, type PairResult } from "../../src/conformance/report.js";
import { buildReport } from "../../src/conformance/runner.js";
import { tensor } from "../../src/tensor/index.js";
import { REPO_ROOT, tempDir } from "../helpers/python.js";

const tmp = tempDir("loraport-report-");
afterAll(() => tmp.cleanup());

const TOL = { abs: 1e-4, rel: 1e-4 };

/** A pair whose figures come from compareTensors on `a` vs `b` (one module). */
function pair(caseId: string, sides: [string, string], a: number[], b: number[]): PairResult {
  const c = compareTensors(tensor("F32", [a.length], Float32Array.from(a)), tensor("F32", [b.length], Float32Array.from(b)), TOL);
  return {
    id: `${caseId} :: ${sides[0]} vs ${sides[1]}`, case_id: caseId, title: caseId, backend_pair: sides, kind: "logits", role: pairRole(sides),
    status: c.passed ? "passed" : "failed", passed: c.passed, max_abs: c.max_abs, max_rel: c.max_rel, margin: c.margin,
    tolerance: { ...TOL, dtype: "F32" }, where: { module: "batch0", index: c.worst_index, a: c.worst_a, b: c.worst_b },
    per_module: [{ module: "batch0", max_abs: c.max_abs, max_rel: c.max_rel, margin: c.margin, passed: c.passed }], notes: [],
  };
}

const CUT = "published/gpt2-medium-e2e: logits (forward) pairs ran on a base with layers cut to 2 of 24";
const pairs = [
  pair("generated/x", ["ts.merge", "peft.merge"], [0.01 + 3e-5, 2], [0.01, 2]),
  pair("generated/x", ["peft.merged", "peft.unmerged"], [0.01 + 9e-5, 2], [0.01, 2]),
  pair("published/gpt2-medium-e2e", ["ort.merged", "loralib.merged"], [1 + 1e-5, -3], [1, -3]),
  pair("published/gpt2-medium-e2e", ["peft.merge[ts-converted]", "loralib.merge"], [5, 6], [5, 6]),
  pair("published/gpt2-medium-e2e", ["loralib.merged", "loralib.unmerged"], [7, 8], [7, 8]),
  pair("published/gpt2-medium-e2e", ["peft[recipe].unmerged", "loralib.unmerged"], [7, 8], [7, 8]),
];
const report = buildReport("conformance", pairs, { "generated/x": ["base: seeded llama"] }, { reference_dir: "/ref", base: null, ci: false }, [CUT]);

describe("which pairs are loraport's", () => {
  it("ts.*, ort.* and PEFT on loraport's conversion are loraport's; PEFT/loralib with each other are the bench's", () => {
    expect(pairs.map((p) => p.role)).toEqual(["loraport", "reference", "loraport", "loraport", "reference", "reference"]);
    expect(report.totals_by_role).toEqual({
      loraport: { pairs: 3, passed: 3, failed: 0, not_run: 0, cases: 2 },
      reference: { pairs: 3, passed: 3, failed: 0, not_run: 0, cases: 2 },
    });
    expect(report.totals.pairs).toBe(6);
  });

  it("the report still matches schemas/conformance-report.schema.json", () => {
    const schema = JSON.parse(readFileSync(join(REPO_ROOT, "schemas/conformance-report.schema.json"), "utf8")) as object;
    const validate = new Ajv2020({ allErrors: true, strict: false, formats: { "date-time": true } }).compile(schema);
    expect(validate(JSON.parse(JSON.stringify(report))), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true);
  });
});

describe("the Markdown and HTML report", () => {
  const md = renderMarkdown(report);
  const own = md.slice(md.indexOf("## loraport vs the references"), md.indexOf("## Reference self-consistency"));
  const ref = md.slice(md.indexOf("## Reference self-consistency"), md.indexOf("## Case notes"));

  it("opens with loraport's own count, its worst tolerance use, what it was compared with, and the layer cut", () => {
    const top = md.slice(0, md.indexOf("## loraport vs the references"));
    const worst = Math.max(...pairs.filter((p) => p.role === "loraport").map((p) => p.margin!));
    expect(worst).toBeGreaterThan(0.1); // the ts.merge pair: 3e-5 against 1e-4 + 1e-4·0.01
    expect(top).toMatch(/loraport vs the references: 3 of 3 pairs passed; the worst used 30 % of its tolerance \(generated\/x: ts\.merge vs peft\.merge\)/);
    expect(Number((100 * worst).toPrecision(2))).toBe(30);
    expect(top).toMatch(/Reference self-consistency \(loraport not involved, counted apart\): 3 of 3 pairs passed/);
    expect(top).toContain(CUT);
    expect(top).toMatch(/compared: loraport's backends against PEFT and loralib/);
    expect(top).toMatch(/\|a − b\| ≤ atol \+ rtol·\|b\|/);
  });

  it("puts each pair in its own section, with the tolerance used instead of max rel", () => {
    expect(own).toContain("ts.merge vs peft.merge");
    expect(own).toContain("ort.merged vs loralib.merged");
    expect(own).not.toContain("peft.merged vs peft.unmerged");
    expect(ref).toContain("peft.merged vs peft.unmerged");
    expect(ref).toContain("loralib.merged vs loralib.unmerged");
    expect(ref).not.toContain("ts.merge");
    expect(md).toMatch(/\| case \| pair \| kind \| status \| tolerance used \| max abs \|/);
    expect(md).not.toMatch(/max rel/);
    // The reference pair's relative error is far above rtol, yet it passes: the row shows the share used (< 1).
    const selfCheck = pairs[1]!;
    expect(selfCheck.max_rel!).toBeGreaterThan(10 * TOL.rel);
    expect(selfCheck.margin!).toBeLessThan(1);
    expect(ref).toMatch(new RegExp(`peft\\.merged vs peft\\.unmerged \\| logits \\| PASS \\| ${String(Number(selfCheck.margin!.toPrecision(2))).replace(".", "\\.")} \\|`));
  });

  it("HTML: two tables, loraport's first, and the summary names the worst tolerance use", () => {
    const html = renderHtml(report);
    expect(html.indexOf('id="results"')).toBeLessThan(html.indexOf('id="reference-results"'));
    const ownTable = html.slice(html.indexOf('id="results"'), html.indexOf('id="reference-results"'));
    expect(ownTable.match(/<tr class="pass">/g)?.length).toBe(3);
    expect(html).toMatch(/<div id="summary"[^>]*><strong>PASSED<\/strong> — loraport vs the references: 3 of 3 pairs passed/);
    expect(html.indexOf(CUT)).toBeLessThan(html.indexOf('id="results"'));
  });
});

describe("conformance --report F", () => {
  it("writes the three files and prints only a short summary with their paths", async () => {
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
    try {
      await emitReport(report, { report: join(tmp.dir, "r.html") });
    } finally {
      process.stdout.write = write;
      process.exitCode = undefined;
    }
    const printed = out.join("");
    for (const f of ["r.html", "r.md", "r.json"]) {
      expect(existsSync(join(tmp.dir, f))).toBe(true);
      expect(printed).toContain(join(tmp.dir, f));
    }
    expect(printed).not.toContain("| case |");
    expect(printed.split("\n").length).toBeLessThan(10);
    expect(printed).toMatch(/^PASSED — loraport vs the references: 3 of 3 pairs passed/);
    expect(readFileSync(join(tmp.dir, "r.md"), "utf8")).toContain("| case | pair |");
  });
});
