/**
 * The Hugging Face Hub cache folder, chosen as huggingface_hub (and so transformers) chooses it: `HF_HUB_CACHE`,
 * else the legacy `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
 * `~/.cache/huggingface/hub`.
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";

function expandHome(p: string): string {
  return p === "~" || p.startsWith("~/") ? join(homedir(), p.slice(1)) : p;
}

export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env["HF_HUB_CACHE"] || env["HUGGINGFACE_HUB_CACHE"];
  if (explicit) return resolve(expandHome(explicit));
  const home = env["HF_HOME"] || join(env["XDG_CACHE_HOME"] || join(homedir(), ".cache"), "huggingface");
  return resolve(expandHome(home), "hub");
}

/** The folder of one model repository inside the cache: `models--org--name`. */
export function repoCacheFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, `models--${repo.split("/").join("--")}`);
}

/** HF_HUB_OFFLINE as huggingface_hub reads it (1, ON, YES, TRUE, any case). */
export function hubOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  return ["1", "ON", "YES", "TRUE"].includes((env["HF_HUB_OFFLINE"] ?? "").toUpperCase());
}
