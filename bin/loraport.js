#!/usr/bin/env node
// The `loraport` CLI entry point; the commands live in dist/cli (built from sdk/src/cli).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error("loraport: the SDK is not built yet; run `npm run setup` in the loraport folder first.");
  process.exit(2);
}
const { run, exitQuietlyOnBrokenPipe } = await import(main.href);
exitQuietlyOnBrokenPipe();
process.exitCode = await run(process.argv.slice(2));
