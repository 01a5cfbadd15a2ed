/**
 * The report as a Markdown summary and as one self-contained HTML page (tables + inline SVG charts). Both open with
 * what loraport was compared with and how close it came to the tolerance; loraport's pairs and the reference
 * libraries' self-consistency pairs are shown and counted apart.
 */
import { roleOf, totalsByRole, worstMargin, type ConformanceReport, type PairResult, type ReportTotals } from "./report.js";
import { errorChart } from "./svg-chart.js";

function fmt(x: number | null | undefined): string {
  if (x === null || x === undefined) return "–";
  return x === 0 ? "0" : x.toExponential(2);
}

/** Share of the tolerance used: two significant digits, `0` for exact agreement. */
export function fmtMargin(m: number | null | undefined): string {
  if (m === null || m === undefined) return "–";
  if (m === 0) return "0";
  return m < 0.001 ? m.toExponential(1) : String(Number(m.toPrecision(2)));
}

function percent(m: number): string {
  return m === 0 ? "0 %" : `${Number((100 * m).toPrecision(2))} %`;
}

function whereText(p: PairResult): string {
  if (p.max_abs === 0) return "exact (bit-identical)";
  return p.where ? `${p.where.module}[${p.where.index.join(", ")}]` : "";
}

const STATUS = { passed: "PASS", failed: "FAIL", not_run: "not run" } as const;

export const TOLERANCE_TEXT =
  "A pair passes when every element has |a − b| ≤ atol + rtol·|b| (numpy.allclose). " +
  "\"tolerance used\" is the worst element's |a − b| / (atol + rtol·|b|): ≤ 1 passes, 0.25 means a quarter of the allowed error, 0 is bit-identical.";

function countText(t: ReportTotals): string {
  const ran = t.passed + t.failed;
  return `${t.passed} of ${ran} pairs passed${t.failed ? `, ${t.failed} FAILED` : ""}${t.not_run ? `, ${t.not_run} not run` : ""}`;
}

/** The headline: loraport's own result first, with its worst tolerance use; the reference self-checks after, apart. */
export function headline(r: ConformanceReport): { verdict: string; loraport: string; reference: string } {
  const byRole = r.totals_by_role ?? totalsByRole(r.cases);
  const own = r.cases.filter((p) => roleOf(p) === "loraport");
  const worst = worstMargin(own);
  const worstText = worst
    ? `; the worst used ${percent(worst.margin)} of its tolerance (${worst.pair.case_id}: ${worst.pair.backend_pair.join(" vs ")})`
    : "";
  return {
    verdict: r.passed ? "PASSED" : "FAILED",
    loraport: `loraport vs the references: ${countText(byRole.loraport)}${worstText}.`,
    reference: `Reference self-consistency (loraport not involved, counted apart): ${countText(byRole.reference)}.`,
  };
}

function mdTable(pairs: readonly PairResult[]): string[] {
  const lines = [
    "| case | pair | kind | status | tolerance used | max abs | tolerance (atol / rtol, dtype) | worst element |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const p of pairs) {
    const status = p.status === "not_run" ? `not run: ${p.reason ?? ""}` : STATUS[p.status];
    lines.push(`| ${p.case_id} | ${p.backend_pair[0]} vs ${p.backend_pair[1]} | ${p.kind} | ${status.replace(/\|/g, "\\|")} | ${fmtMargin(p.margin)} | ${fmt(p.max_abs)} | ${fmt(p.tolerance.abs)} / ${fmt(p.tolerance.rel)}, ${p.tolerance.dtype} | ${whereText(p)} |`);
  }
  return lines;
}

export function renderMarkdown(r: ConformanceReport): string {
  const h = headline(r);
  const own = r.cases.filter((p) => roleOf(p) === "loraport");
  const ref = r.cases.filter((p) => roleOf(p) === "reference");
  const lines = [
    `# loraport ${r.kind} report`,
    "",
    `**${h.verdict}** — ${h.loraport}`,
    "",
    h.reference,
    "",
    ...(r.scope ?? []).map((s) => `- ${s}`),
    "",
    `${TOLERANCE_TEXT} ${r.totals.pairs} pairs in ${r.totals.cases} cases; reference folder \`${r.settings.reference_dir}\`; CI: ${r.settings.ci}; ${r.created}.`,
    "",
    "## loraport vs the references",
    "",
    ...mdTable(own),
  ];
  if (ref.length) lines.push("", "## Reference self-consistency (loraport not involved)", "", "Both sides are the reference libraries (e.g. PEFT merged vs unmerged): a check of the test bench itself.", "", ...mdTable(ref));
  const notes = Object.entries(r.case_notes).filter(([, n]) => n.length);
  if (notes.length) {
    lines.push("", "## Case notes", "");
    for (const [id, n] of notes) lines.push(`- **${id}**: ${n.join("; ")}`);
  }
  const pairNotes = r.cases.filter((p) => p.notes.length);
  if (pairNotes.length) {
    lines.push("", "## Pair notes", "");
    for (const p of pairNotes) lines.push(`- ${p.id}: ${p.notes.slice(0, 5).join("; ")}`);
  }
  return `${lines.join("\n")}\n`;
}

/** What `conformance --report F` prints instead of the whole table: the headline, the scope and where the files are. */
export function renderSummary(r: ConformanceReport, files: readonly string[]): string {
  const h = headline(r);
  const failed = r.cases.filter((p) => p.status === "failed").map((p) => `  FAILED ${p.id}: tolerance used ${fmtMargin(p.margin)}, max abs ${fmt(p.max_abs)}${p.notes[0] ? ` — ${p.notes[0]}` : ""}`);
  return `${[`${h.verdict} — ${h.loraport}`, h.reference, ...(r.scope ?? []).map((s) => `  ${s}`), ...failed, `report: ${files.join(", ")}`].join("\n")}\n`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function htmlRows(pairs: readonly PairResult[]): string[] {
  return pairs.map((p) => {
    const cls = p.status === "passed" ? "pass" : p.status === "failed" ? "fail" : "notrun";
    const why = p.status === "not_run" ? (p.reason ?? "") : p.status === "failed" ? (p.notes[0] ?? "") : "";
    const status = `${p.status === "not_run" ? "not run" : STATUS[p.status]}${why ? `<div class="why">${esc(why.length > 300 ? `${why.slice(0, 300)}…` : why)}</div>` : ""}`;
    return `<tr class="${cls}"><td>${esc(p.case_id)}</td><td>${esc(p.backend_pair[0])} <span class="vs">vs</span> ${esc(p.backend_pair[1])}</td><td>${p.kind}</td><td class="status">${status}</td><td class="num used">${fmtMargin(p.margin)}</td><td class="num">${fmt(p.max_abs)}</td><td class="num">${fmt(p.tolerance.abs)} / ${fmt(p.tolerance.rel)} <small>${esc(p.tolerance.dtype)}</small></td><td class="where">${esc(whereText(p))}</td></tr>`;
  });
}

function htmlTable(id: string, pairs: readonly PairResult[], first: string): string {
  return `<table id="${id}" class="results"><thead><tr><th>case</th><th>pair (${first} vs reference)</th><th>kind</th><th>status</th><th>tolerance used (≤ 1 passes)</th><th>max abs |a − b|</th><th>tolerance atol / rtol</th><th>worst element</th></tr></thead>
<tbody>
${htmlRows(pairs).join("\n")}
</tbody></table>`;
}

export function renderHtml(r: ConformanceReport): string {
  const h = headline(r);
  const own = r.cases.filter((p) => roleOf(p) === "loraport");
  const ref = r.cases.filter((p) => roleOf(p) === "reference");
  const byCase = new Map<string, PairResult[]>();
  for (const p of r.cases) byCase.set(p.case_id, [...(byCase.get(p.case_id) ?? []), p]);
  const sections = [...byCase].map(([id, pairs]) => {
    const charts = pairs.filter((p) => p.per_module.length > 0).map(errorChart).join("\n");
    const notes = [...(r.case_notes[id] ?? []), ...pairs.flatMap((p) => p.notes.map((n) => `${p.backend_pair.join(" vs ")}: ${n}`))];
    return `<section class="case"><h3>${esc(id)}</h3><p class="title">${esc(pairs[0]?.title ?? "")}</p>${notes.length ? `<ul class="notes">${notes.slice(0, 12).map((n) => `<li>${esc(n)}</li>`).join("")}</ul>` : ""}<div class="charts">${charts || "<p><em>no pair of this case ran</em></p>"}</div></section>`;
  });
  const scope = r.scope ?? [];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loraport ${r.kind} report</title>
<style>
body{font-family:system-ui,sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 6px}
h2{font-size:17px;margin:20px 0 6px}
.summary{font-size:15px;margin:8px 0 6px;padding:8px 12px;border-radius:4px}
.summary.ok{background:#e5f5e0;border:1px solid #74c476}.summary.bad{background:#fee0d2;border:1px solid #fb6a4a}
.refsummary{font-size:13px;color:#555;margin:4px 0 10px}
ul.scope{font-size:13px;margin:6px 0 10px;padding-left:20px}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
tr.pass td.status{background:#c7e9c0;font-weight:bold}
tr.fail td.status{background:#fc9272;font-weight:bold}
tr.notrun td.status{background:#eeeeee;color:#555}
#reference-results tr.pass td.status{background:#e8e8e8}
td.num{font-family:monospace;white-space:nowrap}
td.used{font-weight:bold}
td.where{font-family:monospace;font-size:11px}
.why{font-size:10px;font-weight:normal;max-width:360px}
.vs{color:#888}
section.case{margin:18px 0;border-top:1px solid #ddd}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.notes{font-size:12px;color:#444}
</style></head>
<body>
<h1>loraport ${r.kind} report</h1>
<div id="summary" class="summary ${r.passed ? "ok" : "bad"}"><strong>${h.verdict}</strong> — ${esc(h.loraport)}</div>
<div class="refsummary">${esc(h.reference)}</div>
${scope.length ? `<ul class="scope">${scope.map((s) => `<li>${esc(s)}</li>`).join("")}</ul>` : ""}
<p style="font-size:12px">${esc(TOLERANCE_TEXT)} ${r.totals.pairs} pairs in ${r.totals.cases} cases · reference folder <code>${esc(r.settings.reference_dir)}</code> · CI: ${r.settings.ci} · ${esc(r.created)}</p>
<h2>loraport vs the references</h2>
${htmlTable("results", own, "loraport")}
${ref.length ? `<h2>Reference self-consistency (loraport not involved)</h2>\n<p style="font-size:12px">Both sides are the reference libraries (e.g. PEFT merged vs unmerged): a check of the test bench itself, counted apart.</p>\n${htmlTable("reference-results", ref, "reference")}` : ""}
<h2>Per-module tolerance used</h2>
${sections.join("\n")}
</body></html>
`;
}
