import type { Command } from "commander";

/** `loraport demo`: the product's main path end to end on a built-in default. Grows as capabilities land. */
export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("run loraport's main path end to end on a built-in default")
    .action(async () => {
      console.log("loraport demo: (scaffold) nothing yet");
    });
}
