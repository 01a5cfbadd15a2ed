/** Shared by the CLI tests: the CLI run in-process as `bin/loraport.js` runs it, and tiny seeded inputs written by loraport. */
import { loraConfig } from "../../src/adapter/config.js";
import { writePeftAdapter } from "../../src/adapter/peft-io.js";
import type { LoraAdapter } from "../../src/adapter/adapter.js";
import { run } from "../../src/cli/main.js";
import { writeSafetensors } from "../../src/formats/safetensors/index.js";

/** `run(argv)` with stdout and stderr captured: exit code and what each stream got. */
export async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  const log = console.log;
  process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
  console.log = (s: unknown) => out.push(`${String(s)}\n`);
  try {
    const code = await run(argv);
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
    console.log = log;
    process.exitCode = undefined;
  }
}

export function seeded(n: number, seed: number): Float32Array {
  let x = seed;
  return Float32Array.from({ length: n }, () => ((x = (x * 1103515245 + 12345) >>> 0), x / 2 ** 32 - 0.5));
}

/** A one-tensor base (`layer.proj.weight`, 8×16 F32). */
export async function writeTinyBase(path: string): Promise<void> {
  await writeSafetensors(path, new Map([["layer.proj.weight", { dtype: "F32" as const, shape: [8, 16], data: seeded(128, 1) }]]));
}

/** A rank-2 PEFT adapter on the tiny base's `layer.proj`. */
export async function writeTinyAdapter(dir: string, seed: number): Promise<void> {
  const adapter: LoraAdapter = {
    config: loraConfig({ r: 2, lora_alpha: 4, target_modules: ["proj"] }),
    modules: new Map([["layer.proj", { kind: "linear", A: { dtype: "F32", shape: [2, 16], data: seeded(32, seed) }, B: { dtype: "F32", shape: [8, 2], data: seeded(16, seed + 10) } }]]),
    extraTensors: new Map(),
  };
  await writePeftAdapter(dir, adapter);
}
