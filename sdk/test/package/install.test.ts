/**
 * loraport used from a user's own project: `npm pack`'s tarball installed with npm into a fresh folder (offline:
 * a lockfile pins loraport's dependencies to this repository's versions, which this machine's npm cache holds),
 * `import ... from "loraport"` type-checked there by tsc (against the package's .d.ts files), a
 * script run with node, the CLI run through npx, and the sidecar's Python environment made findable with the one
 * documented command, `npx loraport setup-python`.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { referenceDir } from "../../src/reference.js";
import { REPO_ROOT, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { consumerLock } from "./consumer-lock.js";

const tmp = tempDir("loraport-package-");
const project = join(tmp.dir, "consumer");
const installed = join(project, "node_modules", "loraport");
let packed: string[] = [];
const TINY_GPT2 = join(referenceDir(), "tiny_gpt2_vocab50257.safetensors");
// No LORAPORT_PYTHON: the installed package must find (or name) its own environment.
const env: NodeJS.ProcessEnv = { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", npm_config_fund: "false", npm_config_audit: "false" };
delete env["LORAPORT_PYTHON"];

function sh(cmd: string, args: readonly string[], cwd = project): string {
  try {
    return execFileSync(cmd, args, { cwd, env, encoding: "utf8", timeout: limit(300_000), stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`.slice(0, 6000));
  }
}

beforeAll(() => {
  for (const f of ["dist/index.js", "dist/index.d.ts", "dist/cli/main.js"]) {
    if (!existsSync(join(REPO_ROOT, f))) throw new Error(`${f} is missing: \`npm run build\` first (npm test does)`);
  }
  const pack = JSON.parse(sh("npm", ["pack", "--json", "--pack-destination", tmp.dir, "--loglevel=error"], REPO_ROOT)) as { filename: string; files: { path: string }[] }[];
  packed = pack[0]!.files.map((f) => f.path);
  execFileSync("mkdir", ["-p", project]);
  const tarball = pack[0]!.filename;
  copyFileSync(join(tmp.dir, tarball), join(project, tarball));
  const { packageJson, lock } = consumerLock(REPO_ROOT, tarball, readFileSync(join(project, tarball)), ["@types/node"]);
  writeFileSync(join(project, "package.json"), JSON.stringify(packageJson, null, 2));
  writeFileSync(join(project, "package-lock.json"), JSON.stringify(lock, null, 2));
  for (const f of ["index.ts", "tsconfig.json"]) copyFileSync(join(import.meta.dirname, "consumer", f), join(project, f));
  try {
    sh("npm", ["ci", "--offline", "--loglevel=error"]);
  } catch (err) {
    // An npm cache without some tarball (node_modules restored some other way): the registry fills the gap.
    if (!/ENOTCACHED/.test((err as Error).message)) throw err;
    sh("npm", ["ci", "--prefer-offline", "--loglevel=error"]);
  }
}, limit(300_000));

afterAll(() => tmp.cleanup());

describe("npm install <tarball> in a fresh project", () => {
  it("the tarball ships what an installed loraport needs, and no tests or sources", () => {
    for (const f of ["package.json", "README.md", "bin/loraport.js", "dist/index.js", "dist/index.d.ts", "dist/cli/main.js", "sidecar/requirements.txt", "sidecar/pyproject.toml", "sidecar/loraport_sidecar/__main__.py"]) {
      expect(packed, f).toContain(f);
    }
    expect(packed.some((f) => f.startsWith("schemas/") && f.endsWith(".json"))).toBe(true);
    expect(packed.some((f) => f.startsWith("conformance/cases/") && f.endsWith(".json"))).toBe(true);
    expect(packed.filter((f) => f.startsWith("sidecar/tests/") || f.startsWith("sdk/") || f.startsWith(".venv") || f.includes("__pycache__"))).toEqual([]);
  });

  it("import { ... } from \"loraport\": tsc type-checks the user's script against the package's declarations", () => {
    sh(join(REPO_ROOT, "node_modules/.bin/tsc"), ["-p", "tsconfig.json"]);
    expect(existsSync(join(project, "out/index.js"))).toBe(true);
  }, limit(120_000));

  it("without a Python environment: the script runs, and the sidecar's error names the one command that makes it", () => {
    const out = JSON.parse(sh("node", ["out/index.js", TINY_GPT2]).trim().split("\n").at(-1)!) as Record<string, unknown>;
    expect(out["tensors"]).toBeGreaterThan(0);
    expect(out["hubError"]).toBe(true);
    expect(out["sidecarError"]).toContain(join(installed, ".venv"));
    expect(out["sidecarError"]).toContain("npx loraport setup-python");
  }, limit(120_000));

  it("the CLI runs from the installed package (npx, no registry)", () => {
    const out = sh("npx", ["--no-install", "loraport", "inspect", TINY_GPT2]);
    expect(out).toContain("transformer.wte.weight");
  }, limit(120_000));

  it("npx loraport setup-python finds an environment that is up to date; the sidecar then starts from the installed package", () => {
    // This repository's .venv, made by `npm run setup` from the same pinned files: setup-python confirms it without
    // installing anything (making one from scratch downloads ~1 GB from PyPI, which this test does not do).
    symlinkSync(join(REPO_ROOT, ".venv"), join(installed, ".venv"));
    const ready = JSON.parse(sh("npx", ["--no-install", "loraport", "setup-python", "--json"]).trim()) as { python: string; made: boolean };
    expect(ready).toEqual({ python: join(installed, ".venv", "bin", "python"), made: false });
    const out = JSON.parse(sh("node", ["out/index.js", TINY_GPT2]).trim().split("\n").at(-1)!) as Record<string, unknown>;
    expect(out["sidecarError"]).toBeUndefined();
    expect(out["ping"]).toBe(true);
    expect(out["torch"]).toMatch(/^2\./);
  }, limit(180_000));
});
