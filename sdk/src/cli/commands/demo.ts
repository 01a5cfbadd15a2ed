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
    .description("run loraport's main path end to end on a built-in default; the files it writes go to a temp work folder, deleted at the end unless --keep")
    .option("--keep", "keep the demo's work folder (adapters, merged weights, ONNX exports it prints paths of) instead of deleting it")
    .action(async (opts: { keep?: boolean }) => {
      const workDir = mkdtempSync(join(tmpdir(), "loraport-demo-"));
      console.log(`work folder: ${workDir} (${opts.keep ? "kept afterwards" : "deleted afterwards; --keep keeps it"})`);
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
        else {
          rmSync(workDir, { recursive: true, force: true });
          console.log(`work folder deleted: ${workDir} (the paths above are gone; run with --keep to keep them)`);
        }
      }
    });
}
