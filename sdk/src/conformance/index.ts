/** The conformance suite: parity of loraport's numbers with loralib's and PEFT's, and `verify` for a user's adapter. */
export { runConformance, DEFAULT_CASES_DIR, type ConformanceOptions } from "./runner.js";
export { runVerify, TOLERANCES, type VerifyOptions } from "./verify.js";
export { readCaseFile, readCaseFolder, type CaseFile, type BackendPair, type PairKind, type Tolerance } from "./case.js";
export { compareTensors, type TensorComparison } from "./compare.js";
export type { ConformanceReport, PairResult, PairStatus, ModuleError, ReportTotals } from "./report.js";
export { renderHtml, renderMarkdown } from "./render.js";
export { writeReport } from "./write-report.js";
