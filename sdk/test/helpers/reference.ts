/**
 * Reference checkpoints in tests: present → path; missing → under CI a hard failure naming the file,
 * elsewhere the test is skipped with the same message.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { referenceDir, referenceFile } from "../../src/reference.js";

export function hasReference(name: string): boolean {
  return existsSync(join(referenceDir(), name));
}

/** In CI a missing reference must fail the run; elsewhere a test may skip. */
export function requireReference(name: string): string | undefined {
  if (hasReference(name)) return join(referenceDir(), name);
  if (process.env["CI"]) return referenceFile(name); // throws FileMissingError naming the file
  console.warn(`skipping: reference file ${name} not found in ${referenceDir()}`);
  return undefined;
}
