import { bridgeSuite } from "./bridge.js";
import { formatsSuite } from "./formats.js";
import { generateSuite } from "./generate.js";
import { mergeBench } from "./merge.js";
import { ortSuite } from "./ort.js";
import { serveSuite } from "./serve.js";
import { trainSuite } from "./train.js";
import type { BenchSuite } from "./types.js";

/** Every benchmark suite, one file each; `npm run bench -- --only NAME` runs one. */
export const SUITES: readonly BenchSuite[] = [formatsSuite, mergeBench, bridgeSuite, ortSuite, generateSuite, serveSuite, trainSuite];
