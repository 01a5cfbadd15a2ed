/**
 * The conformance runner: reads the case files, has the Python reference side compute loralib's and PEFT's
 * numbers, runs loraport's own backends on the same base, adapter and inputs, and compares every pair.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { FileMissingError, UnsupportedFeatureError } from "../errors.js";
import { openSafetensors } from "../formats/safetensors/index.js";
import type { ProgressCallback } from "../progress.js";
import { referenceFile } from "../reference.js";
import type { Tensor } from "../tensor/tensor.js";
import { ortForward, trainingOf, tsConvert, tsLoralibMerge, tsMerge, type BackendContext, type BackendOutput } from "./backends.js";
import { readCaseFolder, type BackendPair, type CaseFile } from "./case.js";
import { compareTensors } from "./compare.js";
import { conformanceReferenceDir, repoRoot } from "./paths.js";
import { ReferenceSession, type JobOutcome, type ReferenceJob, type ReferenceManifest } from "./reference-side.js";
import { pairRole, totalsByRole, totalsOf, type ConformanceReport, type ModuleError, type PairResult } from "./report.js";

export const DEFAULT_CASES_DIR = join(repoRoot(), "conformance/cases");

export interface ConformanceOptions {
  /** Folder of case files (default: the repository's `conformance/cases`). */
  readonly casesDir?: string;
  /** Only cases whose id contains one of these strings. */
  readonly only?: readonly string[];
  /** Folder of the published checkpoints (default: `$LORAPORT_REFERENCE_DIR` or `../shared/reference`). */
  readonly referenceDir?: string;
  /** A Hugging Face model folder with the real base weights, used instead of seeded bases for published cases. */
  readonly base?: string;
  /**
   * lora_alpha for the published checkpoints that store none and mark it as an input (`alpha_input` in the case
   * file: RoBERTa-base MNLI, default 16). Stated in every report.
   */
  readonly alpha?: number;
  /** Keep the work folder (reference tensors, adapters, exports) and put it here. */
  readonly workDir?: string;
  /** Missing reference files fail the run (default: `CI` is set). */
  readonly ci?: boolean;
  readonly onProgress?: ProgressCallback;
}

/** Run the suite; a missing published checkpoint throws `FileMissingError` under CI, else its pairs are "not run". */
export async function runConformance(options: ConformanceOptions = {}): Promise<ConformanceReport> {
  const ci = options.ci ?? Boolean(process.env["CI"]);
  const refDir = conformanceReferenceDir(options.referenceDir);
  let cases = readCaseFolder(options.casesDir ?? DEFAULT_CASES_DIR);
  if (options.only?.length) cases = cases.filter((c) => options.only!.some((s) => c.id.includes(s)));
  // --alpha: the published files store no alpha; cases that take it as an input get it here (and in the jobs).
  const alphaFor = (c: CaseFile): number | undefined => (options.alpha !== undefined && c.adapter["alpha_input"] === true ? options.alpha : undefined);
  cases = cases.map((c) => (alphaFor(c) === undefined ? c : { ...c, adapter: { ...c.adapter, lora_alpha: alphaFor(c) } }));
  const work = options.workDir ? resolve(options.workDir) : mkdtempSync(join(tmpdir(), "loraport-conformance-"));
  mkdirSync(work, { recursive: true });
  const progress = options.onProgress ?? (() => {});
  const results: PairResult[] = [];
  const caseNotes: Record<string, string[]> = {};
  try {
    // 1. Published checkpoints present? loraport's conversion of them goes first (the reference side loads it).
    const jobs: Array<ReferenceJob & { index: number }> = [];
    const convertNotRun = new Map<string, string>();
    for (const [index, c] of cases.entries()) {
      const out = join(work, String(index).padStart(2, "0"));
      const notes: string[] = (caseNotes[c.id] = []);
      if (c.adapter.source === "published") {
        const file = String(c.adapter.file);
        let path: string;
        try {
          path = referenceFile(file, refDir);
        } catch (err) {
          if (ci || !(err instanceof FileMissingError)) throw err;
          results.push(...c.pairs.map((p) => notRun(c, p, `reference file missing: ${err.message}`)));
          continue;
        }
        const conv = await convertSafely(c, path, join(out, "ts_adapter"));
        if ("notRun" in conv) convertNotRun.set(c.id, conv.notRun);
        else {
          notes.push(...conv.lines.map((l) => `loraport convert: ${l}`));
          jobs.push({ index, case: c.path, out, ts_adapter: conv.dir, ts_adapter_forward: conv.dir, ...onnxModes(c), ...alphaJob(alphaFor(c)) });
          continue;
        }
      }
      jobs.push({ index, case: c.path, out, ...onnxModes(c), ...alphaJob(alphaFor(c)) });
    }

    // 2. The reference side, all cases in one process. Generated loralib checkpoints exist only once their case
    //    ran: loraport converts each, and a follow-up job lets PEFT load the result (same process, no new start-up).
    // 3. loraport's backends and the comparisons of a case run as soon as its reference numbers are there
    //    (overlapping the reference side's next case); its work files are dropped after it.
    if (jobs.length) {
      progress({ phase: "conformance", done: 0, total: jobs.length, unit: "cases", message: "starting the reference side (PyTorch, PEFT, loralib)" });
      let done = 0;
      const session = new ReferenceSession({ referenceDir: refDir, ...(options.base ? { base: options.base } : {}) });
      try {
        await Promise.all(jobs.map(async (job) => {
          const c = cases[job.index]!;
          let o = await session.submit(job);
          if (c.adapter.source === "loralib" && "manifest" in o && o.manifest.adapters["loralib"]) {
            const conv = await convertSafely(c, o.manifest.adapters["loralib"], join(job.out, "ts_adapter"));
            if ("notRun" in conv) convertNotRun.set(c.id, conv.notRun);
            else o = await session.submit({ ...job, ts_adapter: conv.dir });
          }
          results.push(...(await compareCase(c, o, job.out, convertNotRun.get(c.id), caseNotes[c.id]!)));
          if (!options.workDir) rmSync(job.out, { recursive: true, force: true });
          progress({ phase: "conformance", done: ++done, total: jobs.length, unit: "cases", message: c.id });
        }));
      } finally {
        await session.close();
      }
    }
  } finally {
    if (!options.workDir) rmSync(work, { recursive: true, force: true });
  }
  results.sort((x, y) => cases.findIndex((c) => c.id === x.case_id) - cases.findIndex((c) => c.id === y.case_id));
  return buildReport("conformance", results, caseNotes, { reference_dir: refDir, base: options.base ?? null, ci }, cutScope(cases, caseNotes));
}

/** A case whose forward checks ran on a cut base (its reference side says so in the notes): one line for the top of the report. */
function cutScope(cases: readonly CaseFile[], caseNotes: Record<string, string[]>): string[] {
  return cases.flatMap((c) => {
    const cut = c.forward?.cut_note;
    return cut && caseNotes[c.id]?.includes(`forward: ${cut}`) ? [`${c.id}: logits (forward) pairs ran on a base with ${cut}`] : [];
  });
}

export function buildReport(kind: ConformanceReport["kind"], results: PairResult[], caseNotes: Record<string, string[]>, settings: ConformanceReport["settings"], scope: readonly string[] = []): ConformanceReport {
  const totals = totalsOf(results);
  const library = (side: string): string => ({ peft: "PEFT", loralib: "loralib" })[side.replace(/[.[].*$/, "")] ?? side;
  const compared = [...new Set(results.filter((p) => p.role === "loraport").map((p) => library(p.backend_pair[1])))].sort();
  const against = compared.length ? `loraport's backends against ${compared.join(" and ")} (Python, computed in this run)` : "no pair of loraport's ran";
  return {
    schema: "loraport-conformance-report/1", kind, created: new Date().toISOString(), settings, case_notes: caseNotes, cases: results, totals,
    totals_by_role: totalsByRole(results), scope: [`compared: ${against}; base weights: ${settings.base ?? "seeded, of the real architectures and shapes"}`, ...scope],
    passed: totals.failed === 0,
  };
}

/**
 * loraport's conversion of a loralib checkpoint; a refusal or an error becomes the reason its pairs report
 * (an UnsupportedFeatureError → not run; any other error → the pairs fail with the message).
 */
async function convertSafely(c: CaseFile, checkpoint: string, outDir: string): Promise<{ dir: string; lines: readonly string[] } | { notRun: string }> {
  try {
    return await tsConvert(c, checkpoint, outDir);
  } catch (err) {
    if (err instanceof UnsupportedFeatureError) return { notRun: `not supported by loraport's converter: ${err.message}` };
    return { notRun: `${CONVERT_FAILED}${err instanceof Error ? err.message : String(err)}` };
  }
}

const CONVERT_FAILED = "loraport's converter failed: ";

function alphaJob(alpha: number | undefined): { lora_alpha?: number } {
  return alpha === undefined ? {} : { lora_alpha: alpha };
}

/** The ONNX exports a case's pairs need (made by the reference process, which has the base loaded already). */
function onnxModes(c: CaseFile): { onnx?: string[] } {
  const modes = [...new Set(c.pairs.flatMap((p) => [p.a, p.b]).filter((n) => n.startsWith("ort.")).map((n) => n.slice(4)))];
  return modes.length ? { onnx: modes } : {};
}

function pairBase(c: CaseFile, p: BackendPair): PairResult {
  return {
    id: `${c.id} :: ${p.a} vs ${p.b}`, case_id: c.id, title: c.title, backend_pair: [p.a, p.b], kind: p.kind, status: "not_run", passed: false,
    role: pairRole([p.a, p.b]), max_abs: null, max_rel: null, margin: null, tolerance: { ...c.tolerances[p.kind], dtype: c.dtype }, where: null, per_module: [], notes: [],
  };
}

function notRun(c: CaseFile, p: BackendPair, reason: string): PairResult {
  return { ...pairBase(c, p), reason };
}

function failed(c: CaseFile, p: BackendPair, notes: string[]): PairResult {
  return { ...pairBase(c, p), status: "failed", notes };
}

/** Compare every pair of one case whose reference side has run. */
export async function compareCase(c: CaseFile, outcome: JobOutcome, out: string, convertNotRun: string | undefined, notes: string[]): Promise<PairResult[]> {
  if ("error" in outcome) {
    // The reference side could not build this case: every pair fails, with the reference's message.
    return c.pairs.map((p) => failed(c, p, [`reference side failed: ${outcome.error.message}`]));
  }
  const m = outcome.manifest;
  notes.push(`base: ${m.base_from}`, ...((c as { notes?: string[] }).notes ?? []), ...m.notes);
  const reference = await openSafetensors(join(out, m.tensors));
  try {
    const ctx: BackendContext = { caseFile: c, manifest: m, reference, workDir: out };
    const cache = new Map<string, Promise<BackendOutput>>();
    const side = (name: string, kind: BackendPair["kind"]): Promise<BackendOutput> => {
      const key = `${kind}:${name}`;
      if (!cache.has(key)) cache.set(key, produce(ctx, name, kind, convertNotRun).catch((err: unknown) => sideError(err)));
      return cache.get(key)!;
    };
    const results: PairResult[] = [];
    for (const p of c.pairs) results.push(await comparePair(c, p, await side(p.a, p.kind), await side(p.b, p.kind)));
    return results;
  } finally {
    await reference.close();
  }
}

/** A backend that refuses a feature (UnsupportedFeatureError) did not run; any other error fails the pair. */
function sideError(err: unknown): BackendOutput {
  if (err instanceof UnsupportedFeatureError) return { notRun: `not supported by this backend: ${err.message}` };
  return { failed: err instanceof Error ? err.message : String(err) } as unknown as BackendOutput;
}

/** A conversion that failed fails its pairs; one that was refused or could not run leaves them not run. */
function convertOutcome(reason: string): BackendOutput {
  if (reason.startsWith(CONVERT_FAILED)) throw new Error(reason);
  return { notRun: reason };
}

/** The tensors of one side: from the reference file, or from one of loraport's backends. */
async function produce(ctx: BackendContext, name: string, kind: BackendPair["kind"], convertNotRun: string | undefined): Promise<BackendOutput> {
  const m = ctx.manifest;
  const fromReference = async (prefix: string, keys: readonly string[]): Promise<BackendOutput> => {
    const tensors = new Map<string, Tensor>();
    for (const k of keys) if (ctx.reference.entry(`${prefix}/${k}`)) tensors.set(k, await ctx.reference.read(`${prefix}/${k}`));
    return { tensors };
  };
  if (kind === "weights" && m.weights.backends.includes(name)) return fromReference(`weights/${name}`, m.weights.params);
  if (kind === "logits" && m.forward.backends.includes(name)) return fromReference(`forward/${name}`, Array.from({ length: m.forward.batches }, (_, i) => `batch${i}`));
  const peftDir = m.adapters["peft"] ?? m.adapters["forward"] ?? m.adapters["recipe"];
  switch (name) {
    case "ts.merge": {
      // PEFT cases: the adapter PEFT wrote; loralib and published cases: loraport's own conversion of the checkpoint.
      if (ctx.caseFile.adapter.source !== "peft" && convertNotRun) return convertOutcome(convertNotRun);
      return tsMerge(ctx, ctx.caseFile.adapter.source === "peft" ? m.adapters["peft"] : join(ctx.workDir, "ts_adapter"));
    }
    case "ts.loralib-merge":
      return tsLoralibMerge(ctx, m.adapters["loralib"] ?? m.adapters["checkpoint"]);
    case "ort.adapter-inputs":
      return ortForward(ctx, "adapter-inputs", peftDir);
    case "ort.merged":
      return ortForward(ctx, "merged", peftDir);
    case "ts.train":
    case "peft.train": {
      // One training run per case gives both kinds: losses as outputs, the trained factors as weights.
      const r = await trainingOf(ctx, name);
      return "notRun" in r ? r : { tensors: kind === "weights" ? r.adapter : new Map([["loss per step", r.losses]]) };
    }
  }
  if (name.includes("[ts-converted]")) return convertOutcome(convertNotRun ?? "not produced by the reference side");
  return { notRun: `not produced: backend '${name}' is not known to the runner or the reference side for this case` };
}

function comparePair(c: CaseFile, p: BackendPair, a: BackendOutput, b: BackendOutput): PairResult {
  const failedSide = [a, b].map((s) => (s as unknown as { failed?: string }).failed).find((x) => x !== undefined);
  if (failedSide !== undefined) return failed(c, p, [`backend error: ${failedSide}`]);
  if ("notRun" in a || "notRun" in b) return { ...pairBase(c, p), reason: ("notRun" in a ? `${p.a}: ${a.notRun}` : "") + ("notRun" in b ? `${"notRun" in a ? "; " : ""}${p.b}: ${b.notRun}` : "") };
  const tol = c.tolerances[p.kind];
  const perModule: ModuleError[] = [];
  const notes: string[] = [];
  let where: PairResult["where"] = null;
  let maxAbs = 0;
  let maxRel = 0;
  let margin = 0;
  let passed = true;
  if (b.tensors.size === 0) return failed(c, p, [`${p.b} produced no tensors`]);
  // Natural order (h.2 before h.10), as a person reads module lists.
  const modules = [...b.tensors.keys()].sort((x, y) => x.localeCompare(y, "en", { numeric: true }));
  for (const module of modules) {
    const ref = b.tensors.get(module)!;
    const cand = a.tensors.get(module);
    if (!cand) {
      passed = false;
      notes.push(`${module}: missing from ${p.a}`);
      perModule.push({ module, max_abs: null, max_rel: null, margin: null, passed: false });
      continue;
    }
    const r = compareTensors(cand, ref, tol);
    if (r.shape_mismatch) notes.push(`${module}: ${r.shape_mismatch}`);
    passed &&= r.passed;
    perModule.push({ module, max_abs: finite(r.max_abs), max_rel: finite(r.max_rel), margin: finite(r.margin), passed: r.passed });
    if (r.max_abs > maxAbs || where === null) {
      if (r.max_abs >= maxAbs) where = { module, index: r.worst_index, a: finite(r.worst_a), b: finite(r.worst_b) };
      maxAbs = Math.max(maxAbs, r.max_abs);
    }
    maxRel = Math.max(maxRel, r.max_rel);
    margin = Math.max(margin, r.margin);
  }
  for (const extra of a.tensors.keys()) if (!b.tensors.has(extra)) notes.push(`${extra}: produced by ${p.a} but not by ${p.b}`);
  if (!Number.isFinite(maxAbs)) notes.push("non-finite error (NaN or Inf in one side, or a shape mismatch)");
  return { ...pairBase(c, p), status: passed ? "passed" : "failed", passed, max_abs: finite(maxAbs), max_rel: finite(maxRel), margin: finite(margin), per_module: perModule, notes, where };
}

function finite(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

export type { ReferenceManifest };
