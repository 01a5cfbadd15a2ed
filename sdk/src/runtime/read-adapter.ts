/**
 * Read an adapter for the runtime from a path: a PEFT folder, or a published loralib checkpoint
 * (`.pt`/`.bin`/`.safetensors`) converted exactly to PEFT form by the adapters module (MergedLinear included).
 */
import { statSync } from "node:fs";
import type { LoraAdapter } from "../adapter/adapter.js";
import { convertLoralibToPeft } from "../adapter/convert.js";
import { readLoralibCheckpoint, type LoralibOptions } from "../adapter/loralib.js";
import { readPeftAdapter } from "../adapter/peft-io.js";
import { FileMissingError } from "../errors.js";

export interface ReadAdapterNotes {
  readonly adapter: LoraAdapter;
  /** What was assumed or warned (loralib hyper-parameters, PEFT warnings), to show the user. */
  readonly notes: readonly string[];
}

export async function readAdapterFromPath(path: string, loralib: LoralibOptions = {}): Promise<ReadAdapterNotes> {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new FileMissingError(path, `${path}: adapter not found (expected a PEFT adapter folder or a loralib checkpoint file)`);
  }
  if (isDir) {
    const r = await readPeftAdapter(path);
    return { adapter: r.adapter, notes: r.warnings };
  }
  const { adapter, report } = convertLoralibToPeft(await readLoralibCheckpoint(path), loralib);
  return { adapter, notes: report.lines };
}
