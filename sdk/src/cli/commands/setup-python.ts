/**
 * `loraport setup-python`: the sidecar's Python environment where the SDK looks for it, `<package root>/.venv`,
 * made from the pinned sidecar/requirements.txt — for an npm-installed loraport, which has no `npm run setup`.
 * Idempotent: the same stamp as scripts/setup.sh, so an environment that is up to date is only confirmed.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { LoraportError } from "../../errors.js";
import { packageRoot } from "../../internal/package-root.js";

function venvPython(venv: string): string {
  return process.platform === "win32" ? join(venv, "Scripts", "python.exe") : join(venv, "bin", "python");
}

/** scripts/setup.sh's stamp: sha256 of requirements.txt then pyproject.toml. */
function requirementsStamp(root: string): string {
  const h = createHash("sha256");
  for (const f of ["requirements.txt", "pyproject.toml"]) h.update(readFileSync(join(root, "sidecar", f)));
  return h.digest("hex");
}

function step(what: string, exe: string, args: readonly string[]): void {
  try {
    // pip's own output is the progress of this long step; stdout stays for the result line.
    execFileSync(exe, args, { stdio: ["ignore", process.stderr, process.stderr] });
  } catch (err) {
    const e = err as { code?: string; status?: number | null };
    throw new LoraportError("E_PYTHON_SETUP", e.code === "ENOENT" ? `${what}: ${exe} not found (give a Python ≥ 3.11 with --python)` : `${what} failed (exit ${e.status ?? "?"}): see its output above`);
  }
}

export function registerSetupPython(program: Command): void {
  program
    .command("setup-python")
    .description("make the sidecar's Python environment (<loraport>/.venv, from sidecar/requirements.txt), or confirm it is up to date")
    .option("--python <exe>", "the Python ≥ 3.11 that makes the environment", "python3")
    .option("--json", "print the result as JSON")
    .action((opts: { python: string; json?: boolean }) => {
      const root = packageRoot();
      const venv = join(root, ".venv");
      const python = venvPython(venv);
      const stampFile = join(venv, ".loraport-stamp");
      const want = requirementsStamp(root);
      const ready = existsSync(python) && existsSync(stampFile) && readFileSync(stampFile, "utf8").trim() === want;
      if (!ready) {
        if (!existsSync(python)) step(`making ${venv}`, opts.python, ["-m", "venv", venv]);
        process.stderr.write(`loraport: installing the sidecar's pinned dependencies into ${venv} (torch, peft, transformers, …; a few minutes the first time)\n`);
        step("pip install -r sidecar/requirements.txt", python, ["-m", "pip", "install", "--disable-pip-version-check", "-r", join(root, "sidecar", "requirements.txt")]);
        writeFileSync(`${stampFile}.tmp`, `${want}\n`);
        renameSync(`${stampFile}.tmp`, stampFile);
      }
      if (opts.json) console.log(JSON.stringify({ python, made: !ready }));
      else console.log(`${ready ? "ready" : "made"}: ${python} (the sidecar uses it unless LORAPORT_PYTHON says otherwise)`);
    });
}
