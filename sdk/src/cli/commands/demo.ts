import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { DEMO_STEPS } from "../demo/steps.js";
import type { DemoContext } from "../demo/step.js";

/** `loraport demo`: the product's main path end to end on a built-in default. Grows as capabilities land. */
export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("run loraport's main path end to end on a built-in default")
    .option("--keep", "keep the demo's work folder and print its path")
    .action(async (opts: { keep?: boolean }) => {
      const workDir = mkdtempSync(join(tmpdir(), "loraport-demo-"));
      const ctx: DemoContext = { workDir, log: (line) => console.log(`  ${line}`), shared: new Map() };
      try {
        for (const [i, step] of DEMO_STEPS.entries()) {
          console.log(`\n[${i + 1}/${DEMO_STEPS.length}] ${step.title}`);
          const t0 = performance.now();
          await step.run(ctx);
          console.log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
        }
        console.log("\ndemo finished.");
      } finally {
        if (opts.keep) console.log(`work folder kept: ${workDir}`);
        else rmSync(workDir, { recursive: true, force: true });
      }
    });
}
