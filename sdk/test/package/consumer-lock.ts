/**
 * A lockfile for a fresh project that depends on a packed loraport tarball: loraport's production dependencies at
 * the versions of this repository's package-lock.json, so `npm ci --offline` installs them from the npm cache
 * that installing this repository filled — no registry, no resolution.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

interface LockEntry {
  version?: string;
  resolved?: string;
  dev?: boolean;
  devOptional?: boolean;
  link?: boolean;
  [key: string]: unknown;
}

/** `extra`: dev packages of this repository to add as the project's own dependencies (e.g. `@types/node`). */
export function consumerLock(repoRoot: string, tarball: string, tarballBytes: Buffer, extra: readonly string[]): { packageJson: object; lock: object } {
  const repoLock = JSON.parse(readFileSync(join(repoRoot, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
  const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string; dependencies: Record<string, string>; bin: unknown; engines: unknown };
  const wanted = new Set(extra.map((n) => `node_modules/${n}`));
  // An extra package's own dependencies come along (e.g. @types/node's undici-types).
  for (const n of extra) for (const d of Object.keys((repoLock.packages[`node_modules/${n}`]?.["dependencies"] as object | undefined) ?? {})) wanted.add(`node_modules/${d}`);
  const packages: Record<string, LockEntry> = {
    "": { name: "consumer", dependencies: { loraport: `file:${tarball}`, ...Object.fromEntries(extra.map((n) => [n, repoLock.packages[`node_modules/${n}`]!.version!])) } },
    "node_modules/loraport": {
      version: pkg.version, resolved: `file:${tarball}`, integrity: `sha512-${createHash("sha512").update(tarballBytes).digest("base64")}`,
      license: "MIT", dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines,
    },
  };
  for (const [path, entry] of Object.entries(repoLock.packages)) {
    if (!path || entry.link || ((entry.dev || entry.devOptional) && !wanted.has(path))) continue;
    const { dev: _dev, devOptional: _devOptional, ...rest } = entry;
    const name = path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
    // This repository's lockfile omits registry URLs; npm's cache is keyed by them.
    packages[path] = { ...rest, resolved: rest.resolved ?? `https://registry.npmjs.org/${name}/-/${name.split("/").pop()}-${rest.version}.tgz` };
  }
  const dependencies = (packages[""]!["dependencies"] as Record<string, string>);
  return {
    packageJson: { name: "consumer", private: true, type: "module", dependencies },
    lock: { name: "consumer", lockfileVersion: 3, requires: true, packages },
  };
}
