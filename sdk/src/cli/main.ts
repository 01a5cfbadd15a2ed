import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Command, CommanderError } from "commander";
import { LoraportError } from "../errors.js";
import { packageRoot } from "../internal/package-root.js";
import { COMMANDS } from "./commands/index.js";
import { resolveModelOptions } from "./model-options.js";

/**
 * Runs the CLI and returns the exit code. Errors become one line on stderr (no stack trace);
 * LORAPORT_DEBUG=1 prints the stack for unexpected errors.
 */
export async function run(argv: readonly string[]): Promise<number> {
  const program = new Command("loraport")
    .description("LoRA adapters from TypeScript: inspect, convert, merge, run and verify")
    .version(packageVersion(), "-V, --version", "print loraport's version")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const register of COMMANDS) register(program);
  markRequired(program);
  // --base/--model may be Hub ids: resolved to folders before any command runs (model-options.ts).
  program.hook("preAction", resolveModelOptions);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    return reportError(err);
  }
}

/**
 * A reader that stops early (`loraport run --json | head -c 300`) closes the pipe: that is not an error of ours, so
 * the process ends quietly instead of dying on an unhandled EPIPE with a stack trace. Installed by bin/loraport.js.
 */
export function exitQuietlyOnBrokenPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
      throw err;
    });
  }
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
}

/** `--help` says which options must be given: commander lists required options like the others. */
function markRequired(cmd: Command): void {
  for (const opt of cmd.options) {
    if (opt.mandatory && !opt.description.endsWith("(required)")) opt.description = `${opt.description} (required)`;
  }
  for (const sub of cmd.commands) markRequired(sub);
}

function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    // commander already printed its message (or help); help and version exit 0.
    return err.exitCode;
  }
  if (err instanceof LoraportError) {
    process.stderr.write(`loraport: ${err.message}\n`);
    return 1;
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`loraport: internal error: ${message.split("\n")[0]}\n`);
  if (process.env["LORAPORT_DEBUG"] && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return 70;
}
