/**
 * Reading torch.save zip checkpoints (`<folder>/data.pkl` + `<folder>/data/<key>` storages) with the
 * allowlisted unpickler: the result equals `torch.load(weights_only=True)`, tensors dense on the CPU
 * whatever device their storage was tagged with.
 */
import { FormatError } from "../../errors.js";
import { itemsize } from "../../tensor/dtype.js";
import type { Tensor } from "../../tensor/tensor.js";
import { openFileForReading } from "../safetensors/reader.js";
import { detectFormat } from "../detect.js";
import { PendingTensor, StorageRef, torchPickleHooks } from "./allowlist.js";
import { materialise } from "./materialise.js";
import { unpickle } from "./pickle.js";
import { ZipArchive } from "./zip.js";

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

export async function readTorchCheckpoint(path: string): Promise<TorchCheckpoint> {
  const format = await detectFormat(path);
  if (format === "torch-legacy") throw new FormatError(path, LEGACY_TORCH_ADVICE);
  if (format !== "torch") throw new FormatError(path, "not a torch.save zip checkpoint (no zip header)");
  const fh = await openFileForReading(path);
  try {
    const zip = await ZipArchive.open(path, fh, (await fh.stat()).size);
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1) {
      throw new FormatError(path, pkls.length ? `several <folder>/data.pkl entries (${pkls.join(", ")})` : "zip archive has no <folder>/data.pkl: not a torch.save checkpoint");
    }
    const prefix = pkls[0]!.slice(0, -"data.pkl".length);
    const byteorder = zip.entries.get(`${prefix}byteorder`);
    if (byteorder && new TextDecoder().decode(await zip.read(byteorder, 16)) !== "little") {
      throw new FormatError(path, "checkpoint was saved on a big-endian machine; loraport reads little-endian checkpoints only");
    }
    const hooks = torchPickleHooks(path);
    const raw = unpickle(path, await zip.read(zip.entries.get(pkls[0]!)!, MAX_PICKLE_BYTES), hooks);

    // Read each referenced storage once; views of one storage share its bytes.
    const storageBytes = new Map<string, Uint8Array>();
    for (const ref of hooks.storages.values()) storageBytes.set(ref.key, await readStorage(path, zip, prefix, ref));

    const viewOfTensor = new WeakMap<Tensor, TensorView>();
    const built = new Map<PendingTensor, Tensor>();
    const value = resolve(raw, new Map(), (p, where) => {
      let t = built.get(p);
      if (!t) {
        t = materialise(path, where, p, storageBytes.get(p.storage.key)!);
        built.set(p, t);
        viewOfTensor.set(t, { storage: p.storage.key, location: p.storage.location, offset: p.offset, stride: p.stride });
      }
      return t;
    });
    const tensors = flattenStateDict(path, value);
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

async function readStorage(path: string, zip: ZipArchive, prefix: string, ref: StorageRef): Promise<Uint8Array> {
  const entry = zip.entries.get(`${prefix}data/${ref.key}`);
  if (!entry) throw new FormatError(path, `storage '${ref.key}' is referenced by data.pkl but ${prefix}data/${ref.key} is not in the archive`);
  const expected = ref.numel * (ref.cls.dtype ? itemsize(ref.cls.dtype) : 1);
  if (entry.size !== expected) {
    throw new FormatError(path, `storage '${ref.key}' (${ref.cls.fullName}, ${ref.numel} elements) needs ${expected} bytes, archive entry has ${entry.size}`);
  }
  return zip.read(entry);
}

/** Copy the unpickled structure with tensors in place of their descriptions, keeping sharing and cycles. */
function resolve(v: unknown, seen: Map<unknown, unknown>, tensorOf: (p: PendingTensor, where: string) => Tensor, where = "checkpoint"): unknown {
  if (v instanceof PendingTensor) return tensorOf(v, where);
  if (typeof v !== "object" || v === null || v instanceof Uint8Array) return v;
  if (seen.has(v)) return seen.get(v);
  if (v instanceof Map) {
    const out = new Map<unknown, unknown>();
    seen.set(v, out);
    for (const [k, x] of v) out.set(k, resolve(x, seen, tensorOf, `${where}['${String(k)}']`));
    return out;
  }
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    seen.set(v, out);
    v.forEach((x, i) => out.push(resolve(x, seen, tensorOf, `${where}[${i}]`)));
    return Object.isFrozen(v) ? Object.freeze(out) : out;
  }
  if (v instanceof Set) {
    const out = new Set<unknown>();
    seen.set(v, out);
    for (const x of v) out.add(resolve(x, seen, tensorOf, where));
    return out;
  }
  // Storage classes, dtypes and other marker objects: not user data.
  return v;
}

function isTensor(v: unknown): v is Tensor {
  return typeof v === "object" && v !== null && "dtype" in v && "shape" in v && ArrayBuffer.isView((v as Tensor).data);
}

/** Nested dicts (and lists) of tensors → `a.b.c` names; `model_state_dict` / `state_dict` wrappers unwrapped. */
export function flattenStateDict(path: string, value: unknown): Map<string, Tensor> {
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
  const onPath = new Set<unknown>();
  const walk = (v: unknown, prefix: string): void => {
    if (isTensor(v)) {
      if (out.has(prefix)) throw new FormatError(path, `two tensors flatten to the name '${prefix}'`);
      out.set(prefix, v);
      return;
    }
    if (!(v instanceof Map) && !Array.isArray(v)) return;
    if (onPath.has(v)) return; // a cycle: nothing new below
    onPath.add(v);
    const items: Iterable<[unknown, unknown]> = v instanceof Map ? v : v.map((x, i) => [i, x] as [unknown, unknown]);
    for (const [k, x] of items) {
      if (typeof k !== "string" && typeof k !== "number" && typeof k !== "bigint") continue;
      walk(x, prefix === "" ? String(k) : `${prefix}.${String(k)}`);
    }
    onPath.delete(v);
  };
  if (isTensor(root)) out.set("", root);
  else walk(root, "");
  return out;
}
