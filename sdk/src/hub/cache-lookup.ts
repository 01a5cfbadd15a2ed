/**
 * Finding a model in the local Hub cache exactly as huggingface_hub's `snapshot_download(local_files_only=True)`
 * (what transformers' `from_pretrained(..., local_files_only=True)` relies on): a 40-hex revision names
 * `snapshots/<hash>/` directly; a branch or tag is read from `refs/<revision>`, whose content is the commit hash.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { repoCacheFolder } from "./cache-dir.js";
import { COMMIT_HASH, type HubId } from "./hub-id.js";

export type CacheLookup =
  | { readonly found: true; readonly snapshot: string; readonly commit: string }
  | { readonly found: false; readonly reason: string };

export function findInCache(id: HubId, cacheDir: string): CacheLookup {
  const storage = repoCacheFolder(cacheDir, id.repo);
  if (!existsSync(storage)) return { found: false, reason: `${storage} does not exist` };
  let commit: string;
  if (COMMIT_HASH.test(id.revision)) {
    commit = id.revision;
  } else {
    const ref = join(storage, "refs", id.revision);
    if (!existsSync(ref)) return { found: false, reason: `no ref '${id.revision}' (${ref} does not exist)` };
    commit = readFileSync(ref, "utf8").trim();
    if (!COMMIT_HASH.test(commit)) return { found: false, reason: `${ref} does not hold a commit hash` };
  }
  const snapshot = join(storage, "snapshots", commit);
  if (!existsSync(snapshot) || !statSync(snapshot).isDirectory()) return { found: false, reason: `${snapshot} does not exist` };
  return { found: true, snapshot, commit };
}
