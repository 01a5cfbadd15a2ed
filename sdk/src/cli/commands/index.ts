import type { Command } from "commander";
import { registerCombine } from "./combine.js";
import { registerConvert } from "./convert.js";
import { registerConformance } from "./conformance.js";
import { registerDemo } from "./demo.js";
import { registerExport } from "./export.js";
import { registerGenerate } from "./generate.js";
import { registerMerge } from "./merge.js";
import { registerRun } from "./run.js";
import { registerServe } from "./serve.js";
import { registerSetupPython } from "./setup-python.js";
import { registerTrain } from "./train.js";
import { registerInspect } from "./inspect.js";
import { registerVerify } from "./verify.js";

/** Every CLI command registers itself here, one file per command. */
export const COMMANDS: ReadonlyArray<(program: Command) => void> = [registerDemo, registerInspect, registerConvert, registerMerge, registerCombine, registerExport, registerRun, registerGenerate, registerServe, registerTrain, registerConformance, registerVerify, registerSetupPython];
