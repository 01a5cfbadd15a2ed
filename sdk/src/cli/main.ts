import { Command, CommanderError } from "commander";
import { LoraportError } from "../errors.js";
import { COMMANDS } from "./commands/index.js";
import { resolveModelOptions } from "./model-options.js";

/**
 * Runs the CLI and returns the exit code. Errors become one line on stderr (no stack trace);
 * LORAPORT_DEBUG=1 prints the stack for unexpected errors.
 */
export async function run(argv: readonly string[]): Promise<number> {
  const program = new Command("loraport")
    .description("LoRA adapters from TypeScript: inspect, convert, merge, run and verify")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const register of COMMANDS) register(program);
  program.hook("preAction", resolveModelOptions);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    return reportError(err);
  }
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
