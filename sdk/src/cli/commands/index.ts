import type { Command } from "commander";
import { registerDemo } from "./demo.js";
import { registerExport } from "./export.js";
import { registerRun } from "./run.js";

/** Every CLI command registers itself here, one file per command. */
export const COMMANDS: ReadonlyArray<(program: Command) => void> = [registerDemo, registerExport, registerRun];
