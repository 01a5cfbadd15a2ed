/** The conformance report: one object, the shape of `schemas/conformance-report.schema.json`. */
import type { PairKind, Tolerance } from "./case.js";

export type PairStatus = "passed" | "failed" | "not_run";

/**
 * What a pair checks. `loraport`: one side is loraport's own output (its merge, conversion, ONNX export or
 * training). `reference`: both sides are the reference libraries (PEFT merged vs unmerged, loralib vs PEFT on the
 * same recipe): a self-consistency check of the test bench, which loraport cannot pass or fail.
 */
export type PairRole = "loraport" | "reference";

/** loraport's backends: `ts.*` (TypeScript), `ort.*` (its ONNX exports in ONNX Runtime), `*[ts-converted]` (PEFT on loraport's conversion). */
export function pairRole(pair: readonly [string, string]): PairRole {
  return pair.some((n) => n.startsWith("ts.") || n.startsWith("ort.") || n.includes("ts-converted")) ? "loraport" : "reference";
}

/** Error figures of one module (merged weights) or one input batch (outputs). */
export interface ModuleError {
  readonly module: string;
  readonly max_abs: number | null;
  readonly max_rel: number | null;
  /** Share of the tolerance used: max over elements of |a − b| / (abs + rel·|b|); ≤ 1 passes. */
  readonly margin?: number | null;
  readonly passed: boolean;
}

/** One backend pair of one case. */
export interface PairResult {
  /** `<case id> :: <a> vs <b>`. */
  readonly id: string;
  readonly case_id: string;
  readonly title: string;
  readonly backend_pair: readonly [string, string];
  readonly kind: PairKind;
  /** Whether loraport is one side (see `pairRole`). */
  readonly role?: PairRole;
  readonly status: PairStatus;
  readonly passed: boolean;
  readonly max_abs: number | null;
  readonly max_rel: number | null;
  /**
   * Share of the tolerance used by the worst element: max |a − b| / (abs + rel·|b|), the quantity the tolerance
   * bounds; ≤ 1 passes (max_rel can be far above `rel` on a passing pair, where |b| is small and abs dominates).
   */
  readonly margin?: number | null;
  readonly tolerance: Tolerance & { readonly dtype: string };
  /** The worst element (largest absolute error): module (or batch) and index. */
  readonly where: { readonly module: string; readonly index: readonly number[]; readonly a: number | null; readonly b: number | null } | null;
  readonly per_module: readonly ModuleError[];
  /** Why the pair was not run (missing reference file, backend not available, not applicable). */
  readonly reason?: string;
  readonly notes: readonly string[];
}

export interface ReportTotals {
  readonly pairs: number;
  readonly passed: number;
  readonly failed: number;
  readonly not_run: number;
  readonly cases: number;
}

export interface ConformanceReport {
  readonly schema: "loraport-conformance-report/1";
  readonly kind: "conformance" | "verify";
  readonly created: string;
  readonly settings: {
    readonly reference_dir: string;
    readonly base: string | null;
    readonly ci: boolean;
  };
  /** Case-level notes (alpha used, layer cuts, base used), by case id. */
  readonly case_notes: Readonly<Record<string, readonly string[]>>;
  readonly cases: readonly PairResult[];
  /** All pairs. */
  readonly totals: ReportTotals;
  /** The same counted apart: loraport's own pairs, and the reference libraries' self-consistency pairs. */
  readonly totals_by_role?: Readonly<Record<PairRole, ReportTotals>>;
  /**
   * What a reader must know before the numbers: what loraport was compared with, and where a check ran on less than
   * the real thing (forward checks on bases cut to a few layers).
   */
  readonly scope?: readonly string[];
  /** True when nothing failed (not-run pairs do not fail a run outside CI; in CI a missing reference file throws). */
  readonly passed: boolean;
}

export function totalsOf(pairs: readonly PairResult[]): ReportTotals {
  return {
    pairs: pairs.length,
    passed: pairs.filter((p) => p.status === "passed").length,
    failed: pairs.filter((p) => p.status === "failed").length,
    not_run: pairs.filter((p) => p.status === "not_run").length,
    cases: new Set(pairs.map((p) => p.case_id)).size,
  };
}

export function roleOf(p: PairResult): PairRole {
  return p.role ?? pairRole(p.backend_pair);
}

export function totalsByRole(pairs: readonly PairResult[]): Record<PairRole, ReportTotals> {
  return { loraport: totalsOf(pairs.filter((p) => roleOf(p) === "loraport")), reference: totalsOf(pairs.filter((p) => roleOf(p) === "reference")) };
}

/** The largest share of its tolerance any passing pair used (null when none ran or none reports it). */
export function worstMargin(pairs: readonly PairResult[]): { margin: number; pair: PairResult } | null {
  let worst: { margin: number; pair: PairResult } | null = null;
  for (const p of pairs) {
    if (p.status !== "passed" || p.margin === undefined || p.margin === null) continue;
    if (!worst || p.margin > worst.margin) worst = { margin: p.margin, pair: p };
  }
  return worst;
}
