/**
 * A model argument (`--base`, `--model`, or an API's model folder) as a folder: a path that exists is used as it
 * is; otherwise a Hub id `org/name[@revision]` is looked up in the local Hugging Face cache (as transformers does
 * with local_files_only), and downloaded into it when the network allows.
 */
import { existsSync } from "node:fs";
import { ArgumentError, HubModelMissingError } from "../errors.js";
import type { ProgressCallback } from "../progress.js";
import { hubCacheDir, hubOffline } from "./cache-dir.js";
import { findInCache } from "./cache-lookup.js";
import { downloadModel } from "./download.js";
import { formatHubId, parseHubId } from "./hub-id.js";

export interface ResolveModelOptions {
  /** The Hub cache; default as huggingface_hub picks it (hubCacheDir()). */
  readonly cacheDir?: string;
  /** Try the network when the cache lacks the model; default true unless HF_HUB_OFFLINE is set. */
  readonly download?: boolean;
  /** The Hub's address; default `$HF_ENDPOINT`, else https://huggingface.co. */
  readonly hubUrl?: string;
  /** Download progress (`phase: "download"`, bytes). */
  readonly onProgress?: ProgressCallback | undefined;
  /** Names the argument in messages, e.g. `--base`. */
  readonly argument?: string | undefined;
}

/** The network error's own words, e.g. `getaddrinfo ENOTFOUND huggingface.co`. */
function networkReason(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string } };
  return e.cause?.message ?? e.message ?? String(err);
}

/**
 * `pathOrId` as a folder path. Strings that exist, and strings that cannot be Hub ids, come back unchanged (the
 * caller's own checks then name what is missing). Throws HubModelMissingError for an id found nowhere.
 */
export async function resolveModelPath(pathOrId: string, options: ResolveModelOptions = {}): Promise<string> {
  if (typeof pathOrId !== "string" || pathOrId === "") {
    throw new ArgumentError(options.argument ?? "model", `expected a model folder or a Hub id org/name[@revision], got ${pathOrId === "" ? "an empty string" : typeof pathOrId}`);
  }
  if (existsSync(pathOrId)) return pathOrId;
  const id = parseHubId(pathOrId);
  if (!id) return pathOrId;
  const cacheDir = options.cacheDir ?? hubCacheDir();
  const cached = findInCache(id, cacheDir);
  if (cached.found) return cached.snapshot;
  const name = formatHubId(id);
  const arg = options.argument ? `${options.argument} ` : "";
  const how = `download it on a machine with a network (\`hf download ${id.repo}${id.explicitRevision ? ` --revision ${id.revision}` : ""}\`, or any loraport command with this id) into that cache, or give a model folder`;
  const notHere = `${arg}${name}: no such folder, and not in the Hugging Face cache ${cacheDir} (${cached.reason})`;
  if (options.download === false || (options.download === undefined && hubOffline())) {
    throw new HubModelMissingError(name, cacheDir, `${notHere}; offline (${options.download === false ? "downloads off" : "HF_HUB_OFFLINE is set"}): ${how}`);
  }
  try {
    return await downloadModel(id, { cacheDir, ...(options.hubUrl ? { hubUrl: options.hubUrl } : {}), onProgress: options.onProgress });
  } catch (err) {
    const status = (err as { statusCode?: unknown }).statusCode;
    if (typeof status === "number") {
      const why = status === 401 || status === 403 || status === 404 ? " (no such model or revision, or it needs HF_TOKEN)" : "";
      throw new HubModelMissingError(name, cacheDir, `${notHere}; the Hub answered ${status} for ${id.repo}@${id.revision}${why}`);
    }
    const e = err as { name?: string; message?: string };
    const unreachable = e.name === "TypeError" || e.name === "AbortError" || e.name === "TimeoutError" || /fetch failed/.test(e.message ?? "");
    throw new HubModelMissingError(name, cacheDir, unreachable
      ? `${notHere}; the Hub cannot be reached (${networkReason(err)}): ${how}`
      : `${notHere}; downloading it failed: ${e.message ?? String(err)}`);
  }
}
