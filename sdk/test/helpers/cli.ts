/** Runs CLI commands in-process, the way `bin/loraport.js` parses them, and returns what they printed. */
import { Command } from "commander";

/**
 * A program with the given commands registered, each `argv` parsed in turn; console.log and stdout are captured
 * (and restored, also when a command throws: the error propagates).
 */
export async function runCli(registers: ReadonlyArray<(program: Command) => void>, ...argvs: readonly string[][]): Promise<string> {
  const program = new Command("loraport").exitOverride();
  for (const register of registers) register(program);
  const out: string[] = [];
  const log = console.log;
  const write = process.stdout.write.bind(process.stdout);
  console.log = (s: string) => out.push(s);
  process.stdout.write = ((s: string) => (out.push(s), true)) as typeof process.stdout.write;
  try {
    for (const argv of argvs) await program.parseAsync([...argv], { from: "user" });
  } finally {
    console.log = log;
    process.stdout.write = write;
  }
  return out.join("\n");
}
