/**
 * Test helper process: writes a 256 KiB safetensors file to each path given and prints one JSON line with the
 * error each write gave (name, osCode, output, message), for output-error tests that need another user or a
 * private mount namespace.
 */
import { OutputWriteError } from "../../../src/errors.js";
import { writeSafetensors } from "../../../src/formats/safetensors/writer.js";
import { fromBytes } from "../../../src/tensor/tensor-impl.js";

const results: unknown[] = [];
for (const path of process.argv.slice(2)) {
  try {
    await writeSafetensors(path, new Map([["w", fromBytes("F32", [256, 256], new Uint8Array(256 * 256 * 4).fill(1))]]));
    results.push({ name: "none", message: "written" });
  } catch (e) {
    const err = e as Error;
    results.push({ name: err.constructor.name, message: err.message, ...(e instanceof OutputWriteError ? { osCode: e.osCode, output: e.output } : {}) });
  }
}
process.stdout.write(`${JSON.stringify(results)}\n`);
