/** The conformance report: one object, the shape of `schemas/conformance-report.schema.json`. */
import type { PairKind, Tolerance } from "./case.js";

export type PairStatus = "passed" | "failed" | "not_run";

/** Error figures of one module (merged weights) or one input batch (outputs). */
export interface ModuleError {
  readonly module: string;
  readonly max_abs: number | null;
  readonly max_rel: number | null;
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
  readonly status: PairStatus;
  readonly passed: boolean;
  readonly max_abs: number | null;
  readonly max_rel: number | null;
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
  readonly totals: ReportTotals;
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
