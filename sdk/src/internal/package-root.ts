/**
 * Where loraport's own files are (package.json, sidecar/, schemas/, conformance/cases/, .venv/), found by walking
 * up from this module, so it works from sdk/src (tests, tsx) and from dist (the CLI) alike.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileMissingError } from "../errors.js";

let cached: string | undefined;

/** The folder holding loraport's package.json. */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: unknown }).name === "loraport") return (cached = dir);
    const up = dirname(dir);
    if (up === dir) throw new FileMissingError("package.json", "cannot find loraport's package.json above its own files");
    dir = up;
  }
}
