/**
 * Outputs never replace inputs. Before anything is written, an output path is compared with every input after
 * resolving symlinks (real paths, also of the parents of a not-yet-existing output) and hard links (device +
 * inode of existing files), so an output that is an input, lies inside an input folder, or is a folder holding an
 * input is refused with `OutputIsInputError` naming both flags. Comparing text paths alone misses `a/../a`,
 * symlinked folders and hard links.
 */
import { readdirSync, realpathSync, statSync, type Stats } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { OutputIsInputError } from "../errors.js";

/** A path with the flag (or argument name) the user gave it under, for the error message. */
export interface NamedPath {
  readonly flag: string;
  /** Optional inputs may be absent; they are skipped. */
  readonly path: string | undefined;
}

/** Folders are walked for hard links up to this many entries (inputs are model and adapter folders, not trees). */
const WALK_LIMIT = 20_000;
const WALK_DEPTH = 6;

/**
 * Throws `OutputIsInputError` when `output` (default flag `--out`) is, lies inside, or contains one of `inputs`.
 * Inputs that do not exist are skipped (reading them reports that).
 */
export function assertOutputNotInput(output: NamedPath | string, inputs: ReadonlyArray<NamedPath | undefined>): void {
  const out: NamedPath = typeof output === "string" ? { flag: "--out", path: output } : output;
  if (out.path === undefined) return;
  const outReal = realOrPlanned(out.path);
  const outStat = statOrUndefined(outReal);
  // Lazily: the output folder's files, only walked when some input exists.
  let outFiles: Map<string, string> | undefined;
  for (const input of inputs) {
    if (!input?.path) continue;
    const inStat = statOrUndefined(input.path);
    if (!inStat) continue;
    const inReal = realpathSync(input.path);
    const refuse = (how: string): never => {
      throw new OutputIsInputError(out.flag, out.path!, input.flag, input.path!, how);
    };
    if (outReal === inReal || (outStat && sameFile(outStat, inStat))) refuse("is");
    if (inStat.isDirectory() && inside(inReal, outReal)) refuse("lies inside");
    if (outStat?.isDirectory() && inside(outReal, inReal)) refuse("is a folder holding");
    if (!outStat) continue;
    // Hard links: the output (or a file in the output folder) is the same inode as an input file.
    const inFiles = identities(inReal, inStat);
    outFiles ??= identities(outReal, outStat);
    for (const [id, path] of outFiles) {
      const hit = inFiles.get(id);
      if (hit !== undefined) refuse(path === outReal ? `is a hard link of ${hit}, part of` : `holds ${path}, a hard link of ${hit}, part of`);
    }
  }
}

/** Real path of `p`; for a path that does not exist yet, the real path of its nearest existing ancestor plus the rest. */
function realOrPlanned(p: string): string {
  let cur = resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(cur), ...rest);
    } catch {
      const up = dirname(cur);
      if (up === cur) return resolve(p);
      rest.unshift(basename(cur));
      cur = up;
    }
  }
}

function statOrUndefined(p: string): Stats | undefined {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

function sameFile(a: Stats, b: Stats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** Whether `child` lies strictly inside folder `parent` (both real, absolute paths). */
function inside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

/** `dev:ino` → path of each regular file at `root` (a file, or a folder walked to a bounded depth and size). */
function identities(root: string, st: Stats): Map<string, string> {
  const ids = new Map<string, string>();
  const add = (path: string, s: Stats): void => {
    if (s.isFile()) ids.set(`${s.dev}:${s.ino}`, path);
  };
  if (!st.isDirectory()) {
    add(root, st);
    return ids;
  }
  let seen = 0;
  const walk = (dir: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (++seen > WALK_LIMIT) return;
      const path = join(dir, name);
      const s = statOrUndefined(path);
      if (!s) continue;
      if (s.isDirectory()) {
        if (depth < WALK_DEPTH) walk(path, depth + 1);
      } else add(path, s);
    }
  };
  walk(root, 0);
  return ids;
}
