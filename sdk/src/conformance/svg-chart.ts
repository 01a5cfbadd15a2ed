/**
 * Per-module charts as inline SVG (no external assets): one horizontal bar per module, the share of the tolerance
 * its worst element used (|a − b| / (atol + rtol·|b|)) on a log scale, with the tolerance (1) drawn as a red line.
 * Exact zeros are drawn at the axis floor and labelled "0". Modules without that figure show their max abs error
 * against atol instead.
 */
import type { PairResult } from "./report.js";

const ROW = 15;
const LEFT = 250;
const PLOT = 360;
const TOP = 36;

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function fmt(x: number | null): string {
  if (x === null) return "n/a";
  return x === 0 ? "0" : x.toExponential(2);
}

/** Decades shown: from below the smallest non-zero error (or 1e-12) to above the largest value and the tolerance. */
function axisRange(values: number[], tol: number): [number, number] {
  const nz = values.filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(tol, ...(nz.length ? nz : [tol * 1e-4])))) - 1;
  const hi = Math.ceil(Math.log10(Math.max(tol, ...nz))) + 1;
  return [Math.max(lo, -16), Math.max(hi, lo + 2)];
}

export function errorChart(p: PairResult): string {
  const mods = p.per_module;
  const byMargin = mods.every((m) => m.margin !== undefined);
  const valueOf = (m: (typeof mods)[number]): number | null => (byMargin ? (m.margin ?? null) : m.max_abs);
  const tol = byMargin ? 1 : p.tolerance.abs;
  const values = mods.map((m) => valueOf(m) ?? Infinity);
  const finiteVals = values.filter(Number.isFinite);
  const [lo, hi] = axisRange(finiteVals, tol);
  const x = (v: number): number => LEFT + (PLOT * (Math.log10(Math.max(v, 10 ** lo)) - lo)) / (hi - lo);
  const height = TOP + mods.length * ROW + 30;
  const width = LEFT + PLOT + 90;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-pair="${esc(p.id)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(`${byMargin ? "tolerance used" : "max abs error"} per module, ${p.id}`)}">`);
  parts.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  parts.push(`<text x="4" y="15" font-size="12" font-family="sans-serif" font-weight="bold">${esc(`${p.backend_pair[0]} vs ${p.backend_pair[1]}`)} — ${byMargin ? "tolerance used" : "max abs error"} per ${p.kind === "weights" ? "module" : "input batch"} (log scale)</text>`);
  for (let d = lo; d <= hi; d++) {
    const gx = x(10 ** d);
    parts.push(`<line x1="${gx}" y1="${TOP - 4}" x2="${gx}" y2="${TOP + mods.length * ROW}" stroke="#dddddd"/>`);
    parts.push(`<text x="${gx}" y="${TOP + mods.length * ROW + 13}" font-size="9" font-family="sans-serif" text-anchor="middle">1e${d}</text>`);
  }
  mods.forEach((m, i) => {
    const y = TOP + i * ROW;
    const v = valueOf(m);
    const label = m.module.length > 40 ? `…${m.module.slice(-39)}` : m.module;
    parts.push(`<text x="${LEFT - 6}" y="${y + 10}" font-size="10" font-family="monospace" text-anchor="end">${esc(label)}</text>`);
    const w = v === null ? PLOT : Math.max(2, x(v) - LEFT);
    const color = !m.passed ? "#d62728" : v === 0 ? "#9ecae1" : "#2b8cbe";
    parts.push(`<rect class="bar" x="${LEFT}" y="${y + 2}" width="${w.toFixed(1)}" height="${ROW - 4}" fill="${color}"><title>${esc(`${m.module}: tolerance used ${fmt(m.margin ?? null)}, max abs ${fmt(m.max_abs)}, max rel ${fmt(m.max_rel)}`)}</title></rect>`);
    parts.push(`<text x="${LEFT + w + 4}" y="${y + 10}" font-size="9" font-family="sans-serif">${esc(fmt(v))}</text>`);
  });
  const tx = x(tol);
  parts.push(`<line class="tolerance" x1="${tx}" y1="${TOP - 6}" x2="${tx}" y2="${TOP + mods.length * ROW}" stroke="#d62728" stroke-width="2" stroke-dasharray="4 2"/>`);
  parts.push(`<text x="${tx + 3}" y="${TOP - 9}" font-size="9" font-family="sans-serif" fill="#d62728">${byMargin ? "tolerance (1)" : `atol ${fmt(tol)}`}</text>`);
  parts.push("</svg>");
  return parts.join("");
}
