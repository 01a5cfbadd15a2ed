/**
 * Hugging Face Hub model ids, `org/name[@revision]`, told apart from paths by the Hub's own naming rules
 * (huggingface_hub's `validate_repo_id`: word characters, `-` and `.`, no `--` or `..`, at most 96 characters).
 */

export interface HubId {
  /** `org/name`. */
  readonly repo: string;
  /** A branch, tag or 40-hex commit hash; `main` when not given. */
  readonly revision: string;
  /** Whether `@revision` was written. */
  readonly explicitRevision: boolean;
}

const NAME_PART = /^[\w.-]+$/;
/** A full commit hash, the only form huggingface_hub resolves offline without a ref file. */
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

function validPart(part: string): boolean {
  return NAME_PART.test(part) && !/^[-.]|[-.]$/.test(part) && !part.includes("--") && !part.includes("..");
}

/**
 * `org/name[@revision]` as a Hub id, or undefined when `text` cannot be one (then it is only a path). Only the
 * two-part form counts: a bare `gpt2` is far more likely a missing folder than a legacy canonical id.
 */
export function parseHubId(text: string): HubId | undefined {
  if (typeof text !== "string") return undefined;
  const at = text.indexOf("@");
  const repo = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? "main" : text.slice(at + 1);
  const parts = repo.split("/");
  if (parts.length !== 2 || repo.length > 96 || !parts.every(validPart)) return undefined;
  // Revisions may hold `/` (refs/pr/1) but never climb out of refs/ nor name an absolute path.
  if (revision === "" || revision.startsWith("/") || revision.endsWith("/") || revision.includes("\\") || revision.includes("\0")) return undefined;
  if (revision.split("/").some((s) => s === "" || s === "." || s === "..")) return undefined;
  return { repo, revision, explicitRevision: at >= 0 };
}

/** The id as written back: `org/name` or `org/name@revision`. */
export function formatHubId(id: HubId): string {
  return id.explicitRevision ? `${id.repo}@${id.revision}` : id.repo;
}
