/**
 * The fuzzer's oracle for one file: every reader is run on it (format detection, the state-dict loader, the
 * summary, and for safetensors the mapped, copying and lazy readers; for torch the checkpoint reader) and the
 * file is a defect when any of them throws something other than a LoraportError, or when they disagree: one
 * accepts what another refuses, or two return different tensors. Tensor bytes are hashed, which also touches
 * every mapped page.
 */
import { createHash } from "node:crypto";
import { LoraportError, ReadLimitError } from "../../../src/errors.js";
import { detectFormat } from "../../../src/formats/detect.js";
import { loadStateDict } from "../../../src/formats/load-state-dict.js";
import { openSafetensors, readSafetensors } from "../../../src/formats/safetensors/reader.js";
import { summariseWeights } from "../../../src/formats/summary.js";
import { readTorchCheckpoint } from "../../../src/formats/torch/checkpoint.js";
import type { Tensor } from "../../../src/tensor/tensor.js";
import { bytesOf } from "../../../src/tensor/tensor-impl.js";

export type Outcome = "ok" | "typed" | "defect";

export interface CheckResult {
  readonly outcome: Outcome;
  /** For defects: what went wrong (the reader and the error or disagreement). */
  readonly detail?: string;
  /** For typed outcomes: loadStateDict's error as `E_CODE[limit]: message`. */
  readonly error?: string;
}

type Attempt<T> = { ok: true; value: T } | { ok: false; error: unknown };

async function attempt<T>(fn: () => Promise<T>): Promise<Attempt<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** A fingerprint of a state dict: names, dtypes, shapes and a hash of the bytes, in name order. */
function fingerprint(tensors: ReadonlyMap<string, Tensor>): string {
  const h = createHash("sha256");
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!;
    h.update(`${name}\0${t.dtype}\0${t.shape.join(",")}\0`);
    h.update(bytesOf(t));
  }
  return h.digest("hex");
}

function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.constructor.name}: ${e.message.slice(0, 300)}`;
  return `non-error thrown: ${String(e).slice(0, 100)}`;
}

export async function checkFile(path: string): Promise<CheckResult> {
  const detected = await attempt(() => detectFormat(path));
  const loaded = await attempt(async () => fingerprint(await loadStateDict(path)));
  const summary = await attempt(async () => {
    const s = await summariseWeights(path);
    return s.tensors.map((t) => `${t.name}:${t.dtype}:${t.shape.join(",")}`).sort().join(";");
  });
  const results: Array<[string, Attempt<string>]> = [
    ["detectFormat", detected.ok ? { ok: true, value: detected.value } : detected],
    ["loadStateDict", loaded],
    ["summariseWeights", summary],
  ];
  const format = detected.ok ? detected.value : undefined;
  const st: Array<[string, Attempt<string>]> = [
    ["readSafetensors(mmap)", await attempt(async () => fingerprint((await readSafetensors(path, { mmap: true })).tensors))],
    ["readSafetensors(copy)", await attempt(async () => fingerprint((await readSafetensors(path, { mmap: false })).tensors))],
    [
      "openSafetensors",
      await attempt(async () => {
        const src = await openSafetensors(path);
        try {
          const out = new Map<string, Tensor>();
          for (const n of src.names) out.set(n, await src.read(n));
          return fingerprint(out);
        } finally {
          await src.close();
        }
      }),
    ],
  ];
  const torch: Array<[string, Attempt<string>]> = [["readTorchCheckpoint", await attempt(async () => fingerprint((await readTorchCheckpoint(path)).tensors))]];
  results.push(...st, ...torch);

  for (const [reader, r] of results) {
    if (!r.ok && !(r.error instanceof LoraportError)) return { outcome: "defect", detail: `${reader} threw ${describeError(r.error)}` };
  }
  // The safetensors readers agree with each other, with detection, and (for safetensors) with the loaders.
  const stOk = st[0]![1].ok;
  for (const [reader, r] of st) {
    if (r.ok !== stOk) return { outcome: "defect", detail: `${reader} ${r.ok ? "accepts" : "refuses"} what readSafetensors(mmap) ${stOk ? "accepts" : "refuses"}` };
    if (r.ok && st[0]![1].ok && r.value !== st[0]![1].value) return { outcome: "defect", detail: `${reader} returns different tensors than readSafetensors(mmap)` };
  }
  if (stOk && format !== "safetensors") return { outcome: "defect", detail: `readSafetensors accepts a file detectFormat calls ${format ?? "(error)"}` };
  const reference = format === "safetensors" ? st[0]![1] : format === "torch" ? torch[0]![1] : undefined;
  if (reference) {
    for (const [reader, r] of [results[1]!, results[2]!]) {
      if (r.ok !== reference.ok) return { outcome: "defect", detail: `${reader} ${r.ok ? "accepts" : "refuses"} a ${format} file its reader ${reference.ok ? "accepts" : "refuses"}` };
    }
    if (loaded.ok && reference.ok && loaded.value !== reference.value) return { outcome: "defect", detail: `loadStateDict returns different tensors than the ${format} reader` };
  } else if (loaded.ok || summary.ok) {
    return { outcome: "defect", detail: `a file detected as ${format ?? "(error)"} was loaded` };
  }
  if (reference?.ok) return { outcome: "ok" };
  const e = loaded.ok ? undefined : (loaded.error as LoraportError);
  return { outcome: "typed", ...(e ? { error: `${e.code}${e instanceof ReadLimitError ? `[${e.limit}]` : ""}: ${e.message.slice(0, 400)}` } : {}) };
}
