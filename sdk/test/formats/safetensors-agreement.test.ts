/**
 * Issue 12 class 3: one decision, for every reader, about what is a safetensors file — the same as Python's
 * safetensors makes in this run. Variants of one valid file (JSON whitespace before the header, a UTF-8 BOM, other
 * Unicode spaces, trailing padding, a 384-byte header whose length prefix starts like a pickle, deep nesting)
 * are given to Python `load_file` and to readSafetensors (mapped and copying), openSafetensors, detectFormat,
 * summariseWeights and loadStateDict: all must accept exactly what Python accepts, with Python's values.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FormatError } from "../../src/errors.js";
import { detectFormat } from "../../src/formats/detect.js";
import { loadStateDict } from "../../src/formats/load-state-dict.js";
import { openSafetensors, readSafetensors } from "../../src/formats/safetensors/reader.js";
import { summariseWeights } from "../../src/formats/summary.js";
import { runPythonJson, tempDir } from "../helpers/python.js";

const tmp = tempDir("loraport-st-agree-");
afterAll(() => tmp.cleanup());

const ENTRY = `"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`;
const DATA = Buffer.from(Float32Array.of(1.5, -2).buffer);

/** A file with header text `text` (raw bytes allowed) and the two F32 values. */
function file(text: Buffer): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, DATA]);
}

const VARIANTS: Record<string, Buffer> = {
  plain: Buffer.from(`{${ENTRY}}`),
  "leading spaces": Buffer.from(`   {${ENTRY}}`),
  "leading tab, CR, LF": Buffer.from(`\t\r\n{${ENTRY}}`),
  "trailing spaces (save_file padding)": Buffer.from(`{${ENTRY}}     `),
  "UTF-8 BOM": Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`{${ENTRY}}`)]),
  "no-break space": Buffer.from(`\u00a0{${ENTRY}}`),
  "form feed": Buffer.from(`\f{${ENTRY}}`),
  "vertical tab": Buffer.from(`\v{${ENTRY}}`),
  "NUL before": Buffer.from(`\u0000{${ENTRY}}`),
  "NUL after": Buffer.from(`{${ENTRY}}\u0000`),
  // 384 = 0x180: the length prefix starts 0x80 0x01, like a protocol-1 pickle.
  "384-byte header": Buffer.from(`{${ENTRY},"__metadata__":{"pad":"${"x".repeat(384 - ENTRY.length - 28)}"}}`),
  "640-byte header (prefix 0x80 0x02, like a legacy torch file)": Buffer.from(`{${ENTRY},"__metadata__":{"pad":"${"x".repeat(640 - ENTRY.length - 28)}"}}`),
  "127 levels deep": Buffer.from(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"z":${"[".repeat(125)}${"]".repeat(125)}}}`),
  "128 levels deep": Buffer.from(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"z":${"[".repeat(126)}${"]".repeat(126)}}}`),
  "only spaces": Buffer.from("        "),
  "empty object": Buffer.from("{}"),
};

const names = Object.keys(VARIANTS);
const path = (i: number) => join(tmp.dir, `v${i}.safetensors`);
let python: Array<{ ok: boolean; values?: number[] }>;

beforeAll(() => {
  names.forEach((n, i) => writeFileSync(path(i), n === "empty object" ? file(VARIANTS[n]!).subarray(0, 10) : file(VARIANTS[n]!)));
  expect(VARIANTS["384-byte header"]!.length).toBe(384);
  expect(VARIANTS["640-byte header (prefix 0x80 0x02, like a legacy torch file)"]!.length).toBe(640);
  python = runPythonJson(`
import json, sys
from safetensors.torch import load_file
out = []
for f in sys.argv[1:]:
    try:
        sd = load_file(f)
        out.append({"ok": True, "values": sd["a"].tolist() if "a" in sd else []})
    except Exception:
        out.append({"ok": False})
print(json.dumps(out))`, names.map((_, i) => path(i)));
});

async function accepts(fn: () => Promise<unknown>): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (err) {
    // Refusals are typed: anything else is a bug of its own.
    expect(err).toBeInstanceOf(FormatError);
    return false;
  }
}

describe("every reader decides what is safetensors as Python's safetensors does", () => {
  names.forEach((name, i) => {
    it(name, async () => {
      const p = path(i);
      const py = python[i]!;
      const ours = {
        "readSafetensors(mmap)": await accepts(() => readSafetensors(p, { mmap: true })),
        "readSafetensors(copy)": await accepts(() => readSafetensors(p, { mmap: false })),
        openSafetensors: await accepts(async () => (await openSafetensors(p)).close()),
        summariseWeights: await accepts(() => summariseWeights(p)),
        loadStateDict: await accepts(() => loadStateDict(p)),
        "detectFormat is safetensors": (await detectFormat(p)) === "safetensors",
      };
      const expected = Object.fromEntries(Object.keys(ours).map((k) => [k, py.ok]));
      // A file Python refuses may still be *detected* as safetensors (and then refused by the reader) when it
      // starts like one; it must never be detected as something else while Python reads it.
      if (!py.ok) expected["detectFormat is safetensors"] = ours["detectFormat is safetensors"];
      expect(ours).toEqual(expected);
      if (py.ok) {
        const { tensors } = await readSafetensors(p, { mmap: false });
        expect([...((tensors.get("a")?.data as Float32Array | undefined) ?? [])]).toEqual(py.values);
        expect([...((await loadStateDict(p)).get("a")?.data ?? [])]).toEqual(py.values);
      }
    });
  });

  it("Python accepts leading JSON whitespace and refuses a BOM (the cases the issue names)", () => {
    expect(python[names.indexOf("leading spaces")]!.ok).toBe(true);
    expect(python[names.indexOf("UTF-8 BOM")]!.ok).toBe(false);
  });
});
