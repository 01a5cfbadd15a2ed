/**
 * Reading torch.save zip checkpoints (`<folder>/data.pkl` + `<folder>/data/<key>` storages) with the
 * allowlisted unpickler: the result equals `torch.load(weights_only=True)`, tensors dense on the CPU
 * whatever device their storage was tagged with.
 */
import { FormatError, ReadLimitError } from "../../errors.js";
import { itemsize } from "../../tensor/dtype.js";
import type { Tensor } from "../../tensor/tensor.js";
import { openFileForReading } from "../safetensors/reader.js";
import { detectFormat } from "../detect.js";
import { ReadBudget, type ReadOptions } from "../limits.js";
import { PendingTensor, StorageRef, torchPickleHooks } from "./allowlist.js";
import { materialise } from "./materialise.js";
import { DEFAULT_LIMITS, describe, unpickle } from "./pickle.js";
import { ZipArchive, type ZipEntry } from "./zip.js";

export interface TorchCheckpoint {
  /** The unpickled object: dicts as Maps, lists as arrays, tuples as frozen arrays, tensors as Tensor leaves. */
  value: unknown;
  /** The flattened state dict: nested dict keys joined with '.', `model_state_dict`/`state_dict` wrappers unwrapped. */
  tensors: Map<string, Tensor>;
  /** Tensor name → storage key; names sharing a key share storage in the checkpoint. */
  storageOf: Map<string, string>;
  /** Tensor name → how it viewed its storage in the checkpoint (equal views = the same tensor, e.g. tied weights). */
  views: Map<string, TensorView>;
}

export interface TensorView {
  readonly storage: string;
  /** Device the storage was saved from (`cpu`, `cuda:0`, ...); the data is always read to the CPU. */
  readonly location: string;
  /** In elements of the tensor's dtype. */
  readonly offset: number;
  readonly stride: readonly number[];
}

/** data.pkl larger than this is not a state dict's pickle. */
const MAX_PICKLE_BYTES = 1 << 30;

export const LEGACY_TORCH_ADVICE =
  "legacy (non-zip) torch.save format, which loraport does not read; convert it with a current torch: " +
  `python -c "import torch; torch.save(torch.load('in.pt', weights_only=True), 'out.pt')"`;

export async function readTorchCheckpoint(path: string, options: ReadOptions = {}): Promise<TorchCheckpoint> {
  const format = await detectFormat(path);
  if (format === "torch-legacy") throw new FormatError(path, LEGACY_TORCH_ADVICE);
  if (format !== "torch") throw new FormatError(path, "not a torch.save zip checkpoint (no zip header)");
  const fh = await openFileForReading(path);
  try {
    const size = (await fh.stat()).size;
    const budget = new ReadBudget(path, size, options.limits);
    const zip = await ZipArchive.open(path, fh, size, budget);
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1) {
      throw new FormatError(path, pkls.length ? `several <folder>/data.pkl entries (${pkls.slice(0, 5).join(", ")})` : "zip archive has no <folder>/data.pkl: not a torch.save checkpoint");
    }
    const prefix = pkls[0]!.slice(0, -"data.pkl".length);
    const byteorder = zip.entries.get(`${prefix}byteorder`);
    if (byteorder && new TextDecoder().decode(await zip.read(byteorder, 16)) !== "little") {
      throw new FormatError(path, "checkpoint was saved on a big-endian machine; loraport reads little-endian checkpoints only");
    }
    const hooks = torchPickleHooks(path, budget);
    const raw = unpickle(path, await zip.read(zip.entries.get(pkls[0]!)!, MAX_PICKLE_BYTES), hooks, DEFAULT_LIMITS, budget);

    // Every storage the pickle names must be in the archive with the right size; only those a tensor uses are
    // read (each once: views of one storage share its bytes, as in torch.load).
    for (const ref of hooks.storages.values()) storageEntry(path, zip, prefix, ref);
    const storageBytes = new Map<string, Uint8Array>();
    const pending: PendingTensor[] = [];
    collectPending(raw, pending, budget);
    for (const p of pending) {
      if (!storageBytes.has(p.storage.key)) storageBytes.set(p.storage.key, await zip.read(storageEntry(path, zip, prefix, p.storage)));
    }

    const viewOfTensor = new WeakMap<Tensor, TensorView>();
    const built = new Map<PendingTensor, Tensor>();
    const value = resolve(raw, budget, (p, where) => {
      let t = built.get(p);
      if (!t) {
        t = materialise(path, where, p, storageBytes.get(p.storage.key)!, budget);
        built.set(p, t);
        viewOfTensor.set(t, { storage: p.storage.key, location: p.storage.location, offset: p.offset, stride: p.stride });
      }
      return t;
    });
    const tensors = flattenStateDict(path, value, budget);
    const views = new Map<string, TensorView>();
    const storageOf = new Map<string, string>();
    for (const [name, t] of tensors) {
      const v = viewOfTensor.get(t)!;
      views.set(name, v);
      storageOf.set(name, v.storage);
    }
    return { value, tensors, storageOf, views };
  } finally {
    await fh.close();
  }
}

function storageEntry(path: string, zip: ZipArchive, prefix: string, ref: StorageRef): ZipEntry {
  const entry = zip.entries.get(`${prefix}data/${ref.key}`);
  if (!entry) throw new FormatError(path, `storage '${ref.key}' is referenced by data.pkl but ${prefix}data/${ref.key} is not in the archive`);
  const expected = ref.numel * (ref.cls.dtype ? itemsize(ref.cls.dtype) : 1);
  if (entry.size !== expected) {
    throw new FormatError(path, `storage '${ref.key}' (${ref.cls.fullName}, ${ref.numel} elements) needs ${expected} bytes, archive entry has ${entry.size}`);
  }
  return entry;
}

/** Containers the resolver walks; everything else (numbers, strings, bytes, markers) is a leaf. */
function isContainer(v: unknown): v is Map<unknown, unknown> | unknown[] | Set<unknown> {
  return v instanceof Map || Array.isArray(v) || v instanceof Set;
}

/** Every distinct tensor description reachable from `root`, iteratively (no recursion: nesting can be deep). */
function collectPending(root: unknown, out: PendingTensor[], budget: ReadBudget): void {
  const seen = new Set<unknown>();
  const todo: unknown[] = [root];
  while (todo.length) {
    const v = todo.pop();
    if (v instanceof PendingTensor) {
      if (!seen.has(v)) {
        seen.add(v);
        out.push(v);
      }
      continue;
    }
    if (!isContainer(v) || seen.has(v)) continue;
    seen.add(v);
    budget.step(v instanceof Map ? 2 * v.size : Array.isArray(v) ? v.length : v.size, () => "walking the checkpoint");
    if (v instanceof Map) for (const [k, x] of v) todo.push(k, x);
    else for (const x of v) todo.push(x);
  }
}

/** Where a value sits, kept as a parent chain so that the text is built only for an error message. */
interface Place {
  readonly parent: Place | undefined;
  readonly key: string;
}

function placeText(p: Place | undefined): string {
  const parts: string[] = [];
  let depth = 0;
  for (let q = p; q; q = q.parent, depth++) if (depth < 32) parts.push(q.key);
  if (depth > 32) parts.push(`…(${depth - 32} more levels)`);
  return `checkpoint${parts.reverse().join("")}`;
}

function keyText(k: unknown): string {
  if (typeof k === "string") return `'${k.length > 64 ? `${k.slice(0, 64)}…` : k}'`;
  if (typeof k === "number" || typeof k === "bigint" || typeof k === "boolean" || k === null) return String(k);
  return `<${describe(k)}>`;
}

/**
 * Copy the unpickled structure with tensors in place of their descriptions, keeping sharing and cycles.
 * Iterative with an explicit stack (a recursive walk overflows the call stack on deep nesting), and nesting
 * deeper than `limits.maxDepth` is refused.
 */
function resolve(root: unknown, budget: ReadBudget, tensorOf: (p: PendingTensor, where: string) => Tensor): unknown {
  const copies = new Map<unknown, unknown>();
  const maxDepth = budget.limits.maxDepth;
  // Each frame fills one copy; `put` stores a resolved child into it.
  interface Frame {
    readonly items: Array<[unknown, unknown]>;
    next: number;
    readonly place: Place | undefined;
    readonly depth: number;
    readonly put: (k: unknown, v: unknown) => void;
    readonly done?: (() => void) | undefined;
  }
  const stack: Frame[] = [];
  const open = (v: unknown, place: Place | undefined, depth: number): unknown => {
    if (v instanceof PendingTensor) return tensorOf(v, placeText(place));
    if (!isContainer(v)) return v; // storage classes, dtypes and other marker objects are not user data
    const known = copies.get(v);
    if (known !== undefined) return known;
    if (depth > maxDepth) {
      throw new ReadLimitError(budget.file, `${placeText(place)}: nested more than ${maxDepth} levels deep (raise limits.maxDepth if the file is trusted)`, "maxDepth");
    }
    const n = v instanceof Map ? v.size : Array.isArray(v) ? v.length : v.size;
    budget.step(n, () => "resolving the checkpoint");
    budget.charge(64 + 48 * n, `${placeText(place)}: a copy with ${n} items`);
    if (v instanceof Map) {
      const out = new Map<unknown, unknown>();
      copies.set(v, out);
      stack.push({ items: [...v], next: 0, place, depth, put: (k, x) => out.set(k, x) });
      return out;
    }
    if (Array.isArray(v)) {
      const out: unknown[] = new Array<unknown>(v.length);
      // A tuple is frozen once filled; until then the copy is what a cycle through it sees, as before.
      copies.set(v, out);
      stack.push({
        items: v.map((x, i) => [i, x] as [unknown, unknown]),
        next: 0,
        place,
        depth,
        put: (k, x) => void (out[k as number] = x),
        done: Object.isFrozen(v) ? () => void Object.freeze(out) : undefined,
      });
      return out;
    }
    const out = new Set<unknown>();
    copies.set(v, out);
    stack.push({ items: [...v].map((x) => [undefined, x] as [unknown, unknown]), next: 0, place, depth, put: (_k, x) => out.add(x) });
    return out;
  };
  const result = open(root, undefined, 0);
  while (stack.length) {
    const f = stack[stack.length - 1]!;
    if (f.next === f.items.length) {
      stack.pop();
      f.done?.();
      continue;
    }
    const [k, x] = f.items[f.next++]!;
    const place: Place = { parent: f.place, key: k === undefined ? "{…}" : `[${keyText(k)}]` };
    f.put(k, open(x, place, f.depth + 1));
  }
  return result;
}

function isTensor(v: unknown): v is Tensor {
  return typeof v === "object" && v !== null && "dtype" in v && "shape" in v && ArrayBuffer.isView((v as Tensor).data);
}

/**
 * Nested dicts (and lists) of tensors → `a.b.c` names; `model_state_dict` / `state_dict` wrappers unwrapped.
 * Iterative; a container shared under several names is walked once per name (each name is a tensor of the
 * state dict), and every step is charged to `budget`, so sharing cannot multiply the work without bound.
 */
export function flattenStateDict(path: string, value: unknown, budget: ReadBudget = new ReadBudget(path, 0)): Map<string, Tensor> {
  let root = value;
  if (root instanceof Map) {
    for (const wrapper of ["model_state_dict", "state_dict"]) {
      if (root instanceof Map && root.get(wrapper) instanceof Map) {
        root = root.get(wrapper);
        break;
      }
    }
  }
  const out = new Map<string, Tensor>();
  if (isTensor(root)) {
    out.set("", root);
    return out;
  }
  // A frame per container on the current path; `onPath` stops cycles.
  interface Frame {
    readonly v: unknown;
    readonly prefix: string;
    readonly items: Iterator<[unknown, unknown]>;
  }
  const onPath = new Set<unknown>();
  const stack: Frame[] = [];
  const enter = (v: unknown, prefix: string) => {
    if (isTensor(v)) {
      if (out.has(prefix)) throw new FormatError(path, `two tensors flatten to the name '${prefix.length > 200 ? `${prefix.slice(0, 200)}…` : prefix}'`);
      budget.charge(64 + 2 * prefix.length, "a tensor name");
      out.set(prefix, v);
      return;
    }
    if (!(v instanceof Map) && !Array.isArray(v)) return;
    if (onPath.has(v)) return; // a cycle: nothing new below
    budget.step(v instanceof Map ? v.size : v.length, () => "flattening the state dict");
    onPath.add(v);
    const items: Iterator<[unknown, unknown]> = v instanceof Map ? v.entries() : v.map((x, i) => [i, x] as [unknown, unknown]).values();
    stack.push({ v, prefix, items });
  };
  enter(root, "");
  while (stack.length) {
    const f = stack[stack.length - 1]!;
    const next = f.items.next();
    if (next.done) {
      stack.pop();
      onPath.delete(f.v);
      continue;
    }
    const [k, x] = next.value;
    if (typeof k !== "string" && typeof k !== "number" && typeof k !== "bigint") continue;
    enter(x, f.prefix === "" ? String(k) : `${f.prefix}.${String(k)}`);
  }
  return out;
}
