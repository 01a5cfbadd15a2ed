/** Where the repository is, found from this file whether it runs from sdk/src (tests, tsx) or dist (the CLI). */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

let cached: string | undefined;

/** The nearest folder above this module that holds loraport's package.json. */
export function repoRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "sidecar"))) return (cached = dir);
    const up = dirname(dir);
    if (up === dir) return (cached = resolve(dirname(fileURLToPath(import.meta.url)), "../.."));
    dir = up;
  }
}

/** The published checkpoints' folder: explicit, `$LORAPORT_REFERENCE_DIR`, else `../shared/reference` beside the repository. */
export function conformanceReferenceDir(explicit?: string): string {
  if (explicit) return resolve(explicit);
  const env = process.env["LORAPORT_REFERENCE_DIR"];
  return env ? resolve(env) : resolve(repoRoot(), "../shared/reference");
}
