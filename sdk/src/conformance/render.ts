/** The report as a Markdown summary and as one self-contained HTML page (table + inline SVG charts). */
import type { ConformanceReport, PairResult } from "./report.js";
import { errorChart } from "./svg-chart.js";

function fmt(x: number | null): string {
  if (x === null) return "–";
  return x === 0 ? "0" : x.toExponential(2);
}

function whereText(p: PairResult): string {
  if (p.max_abs === 0) return "exact (bit-identical)";
  return p.where ? `${p.where.module}[${p.where.index.join(", ")}]` : "";
}

const STATUS = { passed: "PASS", failed: "FAIL", not_run: "not run" } as const;

export function renderMarkdown(r: ConformanceReport): string {
  const t = r.totals;
  const lines = [
    `# loraport ${r.kind} report`,
    "",
    `${r.passed ? "**PASSED**" : "**FAILED**"} — ${t.passed} passed, ${t.failed} failed, ${t.not_run} not run (${t.pairs} backend pairs in ${t.cases} cases). ${r.created}`,
    "",
    `Reference folder: \`${r.settings.reference_dir}\`; base: ${r.settings.base ?? "seeded weights of the right architecture and shapes"}; CI: ${r.settings.ci}.`,
    "Errors: max abs = max |a − b|; max rel = max |a − b| / max(|b|, abs tol); an element passes when |a − b| ≤ abs + rel·|b|.",
    "",
    "| case | pair | kind | status | max abs | max rel | tolerance (abs / rel, dtype) | worst element |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const p of r.cases) {
    const status = p.status === "not_run" ? `not run: ${p.reason ?? ""}` : STATUS[p.status];
    lines.push(`| ${p.case_id} | ${p.backend_pair[0]} vs ${p.backend_pair[1]} | ${p.kind} | ${status.replace(/\|/g, "\\|")} | ${fmt(p.max_abs)} | ${fmt(p.max_rel)} | ${fmt(p.tolerance.abs)} / ${fmt(p.tolerance.rel)}, ${p.tolerance.dtype} | ${whereText(p)} |`);
  }
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

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

export function renderHtml(r: ConformanceReport): string {
  const t = r.totals;
  const rows = r.cases.map((p) => {
    const cls = p.status === "passed" ? "pass" : p.status === "failed" ? "fail" : "notrun";
    const why = p.status === "not_run" ? (p.reason ?? "") : p.status === "failed" ? (p.notes[0] ?? "") : "";
    const status = `${p.status === "not_run" ? "not run" : STATUS[p.status]}${why ? `<div class="why">${esc(why.length > 300 ? `${why.slice(0, 300)}…` : why)}</div>` : ""}`;
    return `<tr class="${cls}"><td>${esc(p.case_id)}</td><td>${esc(p.backend_pair[0])} <span class="vs">vs</span> ${esc(p.backend_pair[1])}</td><td>${p.kind}</td><td class="status">${status}</td><td class="num">${fmt(p.max_abs)}</td><td class="num">${fmt(p.max_rel)}</td><td class="num">${fmt(p.tolerance.abs)} / ${fmt(p.tolerance.rel)} <small>${esc(p.tolerance.dtype)}</small></td><td class="where">${esc(whereText(p))}</td></tr>`;
  });
  const byCase = new Map<string, PairResult[]>();
  for (const p of r.cases) byCase.set(p.case_id, [...(byCase.get(p.case_id) ?? []), p]);
  const sections = [...byCase].map(([id, pairs]) => {
    const charts = pairs.filter((p) => p.per_module.length > 0).map(errorChart).join("\n");
    const notes = [...(r.case_notes[id] ?? []), ...pairs.flatMap((p) => p.notes.map((n) => `${p.backend_pair.join(" vs ")}: ${n}`))];
    return `<section class="case"><h3>${esc(id)}</h3><p class="title">${esc(pairs[0]?.title ?? "")}</p>${notes.length ? `<ul class="notes">${notes.slice(0, 12).map((n) => `<li>${esc(n)}</li>`).join("")}</ul>` : ""}<div class="charts">${charts || "<p><em>no pair of this case ran</em></p>"}</div></section>`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loraport ${r.kind} report</title>
<style>
body{font-family:system-ui,sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 6px}
.summary{font-size:15px;margin:8px 0 14px;padding:8px 12px;border-radius:4px}
.summary.ok{background:#e5f5e0;border:1px solid #74c476}.summary.bad{background:#fee0d2;border:1px solid #fb6a4a}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
tr.pass td.status{background:#c7e9c0;font-weight:bold}
tr.fail td.status{background:#fc9272;font-weight:bold}
tr.notrun td.status{background:#eeeeee;color:#555}
td.num{font-family:monospace;white-space:nowrap}
td.where{font-family:monospace;font-size:11px}
.why{font-size:10px;font-weight:normal;max-width:360px}
.vs{color:#888}
section.case{margin:18px 0;border-top:1px solid #ddd}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.notes{font-size:12px;color:#444}
</style></head>
<body>
<h1>loraport ${r.kind} report</h1>
<div id="summary" class="summary ${r.passed ? "ok" : "bad"}"><strong>${r.passed ? "PASSED" : "FAILED"}</strong> — ${t.passed} passed, ${t.failed} failed, ${t.not_run} not run (${t.pairs} backend pairs in ${t.cases} cases) · ${esc(r.created)}</div>
<p style="font-size:12px">Reference folder <code>${esc(r.settings.reference_dir)}</code> · base: ${esc(r.settings.base ?? "seeded weights of the right architecture and shapes")} · CI: ${r.settings.ci}<br>
max abs = max |a − b|; max rel = max |a − b| / max(|b|, abs tol); an element passes when |a − b| ≤ abs + rel·|b|. Charts: max abs error per module (log scale), tolerance in red.</p>
<table id="results"><thead><tr><th>case</th><th>pair (candidate vs reference)</th><th>kind</th><th>status</th><th>max abs</th><th>max rel</th><th>tolerance abs / rel</th><th>worst element</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody></table>
<h2>Per-module errors</h2>
${sections.join("\n")}
</body></html>
`;
}
