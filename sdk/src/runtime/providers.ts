/**
 * Execution-provider choice for onnxruntime-node: `cuda` when its provider library is installed and an NVIDIA
 * GPU is present, else `cpu`. Asking for CUDA explicitly where it cannot run fails with the reason and the fix;
 * `auto` falls back to CPU and says why.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { RuntimeError } from "../errors.js";

export type ExecutionProvider = "cuda" | "cpu";
/** `auto` (default): CUDA when usable, else CPU. A list: tried in order; an unusable `cuda` alone is an error. */
export type ProviderRequest = "auto" | readonly ExecutionProvider[];

export interface ProviderChoice {
  readonly providers: readonly ExecutionProvider[];
  /** Why CUDA is not used, when it was asked for (explicitly or by `auto`) and is unavailable. */
  readonly note?: string;
}

/** Where onnxruntime-node keeps its native libraries (the CUDA provider is downloaded there by its postinstall). */
export function ortBinaryDir(): string {
  const req = createRequire(import.meta.url);
  const pkg = dirname(req.resolve("onnxruntime-node/package.json"));
  return join(pkg, "bin", "napi-v6", process.platform, process.arch);
}

/** Undefined when the CUDA provider can run here; otherwise the reason, with the fix. */
export function cudaUnavailableReason(): string | undefined {
  const dir = ortBinaryDir();
  const lib = process.platform === "win32" ? "onnxruntime_providers_cuda.dll" : "libonnxruntime_providers_cuda.so";
  if (!existsSync(join(dir, lib))) {
    return `the CUDA provider library ${lib} is not installed in ${dir} (install it: ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node; see docs/gpu.md)`;
  }
  const gpu = process.platform === "win32" || existsSync("/dev/nvidiactl") || existsSync("/proc/driver/nvidia/version");
  if (!gpu) return "no NVIDIA GPU/driver found (/dev/nvidiactl missing)";
  return undefined;
}

export function chooseProviders(request: ProviderRequest = "auto"): ProviderChoice {
  if (request === "auto") {
    const why = cudaUnavailableReason();
    return why ? { providers: ["cpu"], note: `using cpu: CUDA unavailable: ${why}` } : { providers: ["cuda", "cpu"] };
  }
  if (request.length === 0) throw new RuntimeError("executionProviders: expected 'auto' or a non-empty list of 'cuda' | 'cpu'");
  for (const p of request) {
    if (p !== "cuda" && p !== "cpu") throw new RuntimeError(`executionProviders: unknown provider '${String(p)}' (expected 'cuda' or 'cpu')`);
  }
  if (!request.includes("cuda")) return { providers: [...request] };
  const why = cudaUnavailableReason();
  if (!why) return { providers: [...request] };
  const rest = request.filter((p) => p !== "cuda");
  if (rest.length === 0) throw new RuntimeError(`execution provider 'cuda' was asked for but is unavailable: ${why}`, { code: "E_PROVIDER" });
  return { providers: rest, note: `using ${rest[0]}: CUDA was asked for but is unavailable: ${why}` };
}
