/** Runs the CLI from source for tests: `node --import tsx cli-entry.ts <args>` (no build needed). */
import { run } from "../../src/cli/main.js";

process.exitCode = await run(process.argv.slice(2));
