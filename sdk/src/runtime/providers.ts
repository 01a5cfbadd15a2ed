/**
 * Execution-provider choice for onnxruntime-node: `cuda` when its provider library is installed and an NVIDIA
 * GPU is present, else `cpu`. Asking for CUDA explicitly where it cannot run fails with the reason and the fix;
 * `auto` falls back to CPU quietly on a machine without an NVIDIA GPU (nothing was asked for that it lacks), and
 * says so once, briefly, where a GPU is present but the CUDA provider is not installed.
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
  /**
   * Why CUDA is not used: when it was asked for explicitly and is unavailable; under `auto` only where a GPU is
   * present but unusable, and only the first time in a process.
   */
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
  if (!gpuPresent()) return "no NVIDIA GPU/driver found (/dev/nvidiactl missing)";
  return undefined;
}

function gpuPresent(): boolean {
  return process.platform === "win32" || existsSync("/dev/nvidiactl") || existsSync("/proc/driver/nvidia/version");
}

/** `auto`'s note is said once per process (a server loading several models need not repeat it). */
let autoNoteSaid = false;

export function chooseProviders(request: ProviderRequest = "auto"): ProviderChoice {
  if (request === "auto") {
    const why = cudaUnavailableReason();
    if (!why) return { providers: ["cuda", "cpu"] };
    if (!gpuPresent() || autoNoteSaid) return { providers: ["cpu"] };
    autoNoteSaid = true;
    return { providers: ["cpu"], note: "using cpu: this machine has an NVIDIA GPU but onnxruntime-node's CUDA provider is not installed (see docs/gpu.md)" };
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
