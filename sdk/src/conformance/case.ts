/**
 * Conformance case files: declarative JSON in `conformance/cases/` (format in conformance/README.md).
 * The TS runner reads the parts it needs (id, title, tolerances, pairs); the Python reference side reads the
 * rest (base, adapter, inputs).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileMissingError, FormatError } from "../errors.js";

/** Which tolerance applies: merged weights or model outputs (logits). */
export type PairKind = "weights" | "logits";

export interface Tolerance {
  /** Absolute tolerance. */
  readonly abs: number;
  /** Relative tolerance: an element passes when |a − b| ≤ abs + rel·|b|. */
  readonly rel: number;
}

/** Two backends whose numbers must agree; `b` is the reference side. */
export interface BackendPair {
  readonly a: string;
  readonly b: string;
  readonly kind: PairKind;
}

export interface CaseFile {
  readonly id: string;
  readonly title: string;
  /** Storage dtype the tolerances are for (F32, F16, BF16). */
  readonly dtype: string;
  readonly tolerances: Readonly<Record<PairKind, Tolerance>>;
  readonly pairs: readonly BackendPair[];
  readonly adapter: { readonly source: "published" | "peft" | "loralib"; readonly file?: string; readonly [k: string]: unknown };
  readonly base: { readonly family: string; readonly [k: string]: unknown };
  readonly forward?: { readonly cut_note?: string; readonly [k: string]: unknown };
  /** Where the case was read from. */
  readonly path: string;
}

function need<T>(ok: boolean, file: string, field: string, expected: string, value: unknown): asserts ok {
  if (!ok) throw new FormatError(file, `field '${field}' must be ${expected}, got ${JSON.stringify(value)}`);
}

function tolerance(file: string, field: string, v: unknown): Tolerance {
  const t = v as Record<string, unknown> | undefined;
  need(typeof t === "object" && t !== null, file, field, "an object {abs, rel}", v);
  need(typeof t["abs"] === "number" && t["abs"] >= 0, file, `${field}.abs`, "a number ≥ 0", t["abs"]);
  need(typeof t["rel"] === "number" && t["rel"] >= 0, file, `${field}.rel`, "a number ≥ 0", t["rel"]);
  return { abs: t["abs"] as number, rel: t["rel"] as number };
}

/** Read and check one case file; every problem is a FormatError naming the file and field. */
export function readCaseFile(path: string): CaseFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new FileMissingError(path);
    throw new FormatError(path, `not JSON: ${(err as Error).message}`);
  }
  need(typeof raw === "object" && raw !== null && !Array.isArray(raw), path, "(top level)", "an object", raw);
  const o = raw as Record<string, unknown>;
  need(typeof o["id"] === "string" && o["id"] !== "", path, "id", "a non-empty string", o["id"]);
  need(typeof o["title"] === "string", path, "title", "a string", o["title"]);
  need(typeof o["dtype"] === "string", path, "dtype", "a dtype name such as F32", o["dtype"]);
  const tol = o["tolerances"] as Record<string, unknown> | undefined;
  need(typeof tol === "object" && tol !== null, path, "tolerances", "an object {weights, logits}", tol);
  const tolerances = { weights: tolerance(path, "tolerances.weights", tol["weights"]), logits: tolerance(path, "tolerances.logits", tol["logits"]) };
  need(Array.isArray(o["pairs"]) && o["pairs"].length > 0, path, "pairs", "a non-empty array", o["pairs"]);
  const pairs = (o["pairs"] as unknown[]).map((p, i): BackendPair => {
    const q = p as Record<string, unknown>;
    need(typeof q === "object" && q !== null, path, `pairs[${i}]`, "an object {a, b, kind}", p);
    need(typeof q["a"] === "string" && typeof q["b"] === "string", path, `pairs[${i}]`, "two backend names a and b", p);
    need(q["kind"] === "weights" || q["kind"] === "logits", path, `pairs[${i}].kind`, '"weights" or "logits"', q["kind"]);
    return { a: q["a"] as string, b: q["b"] as string, kind: q["kind"] as PairKind };
  });
  const adapter = o["adapter"] as CaseFile["adapter"] | undefined;
  need(typeof adapter === "object" && adapter !== null, path, "adapter", "an object", adapter);
  need(["published", "peft", "loralib"].includes(adapter.source), path, "adapter.source", '"published", "peft" or "loralib"', adapter.source);
  const base = o["base"] as CaseFile["base"] | undefined;
  need(typeof base === "object" && base !== null && typeof base.family === "string", path, "base.family", "a model family name", base);
  return { ...(o as object), id: o["id"] as string, title: o["title"] as string, dtype: o["dtype"] as string, tolerances, pairs, adapter, base, path } as CaseFile;
}

/** Every `*.json` case in a folder, in file-name order. */
export function readCaseFolder(dir: string): CaseFile[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".json")).sort();
  } catch {
    throw new FileMissingError(dir, `${dir}: conformance case folder not found`);
  }
  return names.map((n) => readCaseFile(join(dir, n)));
}
