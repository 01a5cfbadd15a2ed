/** What `--json` reports a command wrote: each file's path and size in bytes. */
import { statSync } from "node:fs";
import { join } from "node:path";
import { CONFIG_FILE, SAFETENSORS_FILE } from "../adapter/peft-io.js";

export interface WrittenFile {
  readonly path: string;
  readonly bytes: number;
}

export function writtenFiles(paths: readonly string[]): WrittenFile[] {
  return paths.map((path) => ({ path, bytes: statSync(path).size }));
}

/** The two files `writePeftAdapter` writes into `dir`. */
export function peftAdapterFiles(dir: string): WrittenFile[] {
  return writtenFiles([join(dir, SAFETENSORS_FILE), join(dir, CONFIG_FILE)]);
}
