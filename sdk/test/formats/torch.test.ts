import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FormatError, UnsafePickleError } from "../../src/errors.js";
import { loadStateDict } from "../../src/formats/load-state-dict.js";
import { TORCH_WEIGHTS_ONLY_GLOBALS, readTorchCheckpoint } from "../../src/formats/torch/index.js";
import { REFERENCE_FILES } from "../../src/reference.js";
import { runPython, runPythonJson, tempDir } from "../helpers/python.js";
import { requireReference } from "../helpers/reference.js";
import { sha256 } from "./fixtures.js";

interface Expected {
  tensors: Record<string, { dtype: string; shape: number[]; sha: string }>;
  shared: string[][];
}

const tmp = tempDir("loraport-torch-");
afterAll(() => tmp.cleanup());
const refs = [requireReference(REFERENCE_FILES.gpt2MediumE2E), requireReference(REFERENCE_FILES.robertaBaseMNLI)].filter((p): p is string => !!p);
let expected: Record<string, Expected> = {};

beforeAll(() => {
  expected = runPythonJson(readFileSync(join(import.meta.dirname, "torch-fixtures.py"), "utf8"), [tmp.dir, ...refs]);
});

async function expectSameAsTorch(path: string): Promise<void> {
  const want = expected[path]!;
  const { tensors, storageOf } = await readTorchCheckpoint(path);
  expect([...tensors.keys()].sort()).toEqual(Object.keys(want.tensors).sort());
  for (const [name, t] of tensors) {
    const w = want.tensors[name]!;
    expect({ name, dtype: t.dtype, shape: [...t.shape] }).toEqual({ name, dtype: w.dtype, shape: w.shape });
    expect(sha256(t), `${name} bytes`).toBe(w.sha);
  }
  const groups = new Map<string, string[]>();
  for (const [name, key] of storageOf) groups.set(key, [...(groups.get(key) ?? []), name]);
  const shared = [...groups.values()].filter((g) => g.length > 1).map((g) => g.sort()).sort();
  expect(shared).toEqual(want.shared);
}

describe("readTorchCheckpoint equals torch.load(weights_only=True)", () => {
  const cases = ["nested.pt", "dtypes.pt", "views.pt", "wrapped.pt", "wrapped2.pt", "param.pt", "attr.pt", "module_state_dict.bin", "cuda.pt", "deflated.pt"];
  for (const name of cases) it(name, () => expectSameAsTorch(join(tmp.dir, name)));

  it("keeps the nested structure in `value`", async () => {
    const { value } = await readTorchCheckpoint(join(tmp.dir, "nested.pt"));
    const v = value as Map<string, unknown>;
    expect(v.get("step")).toBe(3);
    expect(v.get("name")).toBe("x");
    expect(((v.get("model") as Map<string, unknown>).get("dec") as Map<string, unknown>).get("l")).toHaveLength(2);
  });

  it("unwraps model_state_dict and leaves the rest out of `tensors`", async () => {
    const { tensors, value } = await readTorchCheckpoint(join(tmp.dir, "wrapped.pt"));
    expect([...tensors.keys()]).toEqual(["w", "b"]);
    expect((value as Map<string, unknown>).get("epoch")).toBe(2);
  });

  it("the published checkpoints (storages tagged cuda:0)", async () => {
    if (refs.length === 0) return;
    for (const path of refs) await expectSameAsTorch(path);
  });

  it("loadStateDict dispatches on content and refuses the legacy format with how to convert", async () => {
    const sd = await loadStateDict(join(tmp.dir, "views.pt"));
    expect(sd.get("block")!.shape).toEqual([3, 4]);
    await expect(loadStateDict(join(tmp.dir, "legacy.pt"))).rejects.toThrow(/legacy \(non-zip\) torch\.save format.*torch\.save\(torch\.load\(/);
    writeFileSync(join(tmp.dir, "junk.bin"), "hello world, not weights");
    await expect(loadStateDict(join(tmp.dir, "junk.bin"))).rejects.toThrow(/neither a safetensors file nor a torch\.save zip/);
  });
});

describe("the allowlist", () => {
  it("is exactly torch's weights_only allowlist", () => {
    const theirs = runPythonJson<string[]>("import json\nfrom torch._weights_only_unpickler import _get_allowed_globals\nprint(json.dumps(sorted(_get_allowed_globals())))");
    expect([...TORCH_WEIGHTS_ONLY_GLOBALS].sort()).toEqual(theirs);
  });
});

describe("malicious pickles are refused and nothing runs", () => {
  const marker = join(tmp.dir, "pwned");
  // Each payload is a zip shaped like a torch checkpoint whose data.pkl calls something dangerous.
  const MAKE = `
import os, pickle, sys, zipfile, builtins, torch
out, marker = sys.argv[1], sys.argv[2]
class Sys:
    def __reduce__(self): return (os.system, ("touch " + marker,))
class Eval:
    def __reduce__(self): return (builtins.eval, ("open(%r, 'w').write('x')" % marker,))
class Exec:
    def __reduce__(self): return (builtins.exec, ("open(%r, 'w').write('x')" % marker,))
payloads = {
  "system.pt": pickle.dumps({"w": Sys()}, protocol=2),
  "eval.pt": pickle.dumps({"w": Eval()}, protocol=2),
  "exec_p4.pt": pickle.dumps({"w": Exec()}, protocol=4),
}
for name, pkl in payloads.items():
    with zipfile.ZipFile(os.path.join(out, name), "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\\n")
torch.save({"layer": torch.nn.Linear(2, 2)}, os.path.join(out, "module.pt"))
`;
  beforeAll(() => {
    runPython(MAKE, [tmp.dir, marker]);
  });
  const cases: Array<[string, RegExp]> = [
    ["system.pt", /^(posix|os)\.system$/],
    ["eval.pt", /^builtins\.eval$/],
    ["exec_p4.pt", /^builtins\.exec$/],
    ["module.pt", /^torch\.nn\.modules\.linear\.Linear$/],
  ];
  for (const [name, global] of cases) {
    it(name, async () => {
      const path = join(tmp.dir, name);
      const err = await readTorchCheckpoint(path).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(UnsafePickleError);
      expect((err as UnsafePickleError).global).toMatch(global);
      expect((err as Error).message).toContain(path);
      expect(existsSync(marker)).toBe(false);
    });
  }
});

describe("damaged checkpoints are FormatErrors, never crashes or hangs", () => {
  it("truncated archive, missing storage, truncated pickle, wild memo and length fields", async () => {
    const src = readFileSync(join(tmp.dir, "nested.pt"));
    const cut = join(tmp.dir, "cut.pt");
    writeFileSync(cut, src.subarray(0, Math.floor(src.length / 2)));
    await expect(readTorchCheckpoint(cut)).rejects.toBeInstanceOf(FormatError);

    const made = `
import sys, zipfile, pickle
src, out = sys.argv[1], sys.argv[2]
zin = zipfile.ZipFile(src)
pkl_name = [n for n in zin.namelist() if n.endswith("data.pkl")][0]
pkl = zin.read(pkl_name)
def write(name, fn):
    with zipfile.ZipFile(out + "/" + name, "w") as z:
        for n in zin.namelist():
            d = fn(n, zin.read(n))
            if d is not None: z.writestr(n, d)
write("nostorage.pt", lambda n, d: None if n.endswith("data/0") else d)
write("shortpkl.pt", lambda n, d: d[: len(d) // 2] if n == pkl_name else d)
# After PROTO: a LONG_BINGET of a key never stored; a BINUNICODE claiming 2 GB.
write("badmemo.pt", lambda n, d: d[:2] + b"j\\xff\\xff\\xff\\x7f0" + d[2:] if n == pkl_name else d)
write("hugestr.pt", lambda n, d: d[:2] + b"X\\xff\\xff\\xff\\x7fw" + d[2:] if n == pkl_name else d)
write("shortstorage.pt", lambda n, d: d[:4] if n.endswith("data/0") else d)
import torch
torch.save({"w": torch.zeros(1).expand(2**31)}, out + "/expand-bomb.pt")  # 8 GiB once made dense
`;
    runPython(made, [join(tmp.dir, "nested.pt"), tmp.dir]);
    const want: Array<[string, RegExp]> = [
      ["nostorage.pt", /storage '0' is referenced by data\.pkl but .*data\/0 is not in the archive/],
      ["shortpkl.pt", /pickle: truncated/],
      ["badmemo.pt", /pickle: memo key \d+ was never stored/],
      ["hugestr.pt", /pickle: truncated/],
      ["shortstorage.pt", /storage '0' .* needs 48 bytes, archive entry has 4/],
      ["expand-bomb.pt", /checkpoint\['w'\]: tensor \[2147483648\] \(8589934592 bytes\) is larger than one buffer can hold/],
    ];
    for (const [name, message] of want) {
      const err = await readTorchCheckpoint(join(tmp.dir, name)).then(() => undefined, (e: unknown) => e);
      expect(err, name).toBeInstanceOf(FormatError);
      expect((err as Error).message, name).toMatch(message);
    }
  });
});
