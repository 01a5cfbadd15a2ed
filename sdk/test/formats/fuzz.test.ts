/**
 * Damaged inputs, many of them: seeded random byte changes to a real torch pickle and a real safetensors
 * header must give a result or a FormatError — never another exception, a crash or a hang.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FormatError } from "../../src/errors.js";
import { headerLength, parseHeader } from "../../src/formats/safetensors/header.js";
import { writeSafetensors } from "../../src/formats/safetensors/index.js";
import { torchPickleHooks } from "../../src/formats/torch/allowlist.js";
import { unpickle } from "../../src/formats/torch/pickle.js";
import { runPython, tempDir } from "../helpers/python.js";
import { mixedStateDict } from "./fixtures.js";

const tmp = tempDir("loraport-fuzz-");
afterAll(() => tmp.cleanup());

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

/** Copies of `src` with 1–4 random bytes replaced, or cut short. */
function* mutants(src: Uint8Array, count: number, seed: number): Generator<Uint8Array> {
  const r = rng(seed);
  for (let i = 0; i < count; i++) {
    const m = src.slice();
    if (r() < 0.1) {
      yield m.subarray(0, Math.floor(r() * m.length));
      continue;
    }
    const k = 1 + Math.floor(r() * 4);
    for (let j = 0; j < k; j++) m[Math.floor(r() * m.length)] = Math.floor(r() * 256);
    yield m;
  }
}

function expectOnlyFormatErrors(run: () => unknown): void {
  try {
    run();
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
  }
}

let pickleBytes: Uint8Array;
beforeAll(() => {
  const hex = runPython(`
import io, zipfile, torch
from collections import OrderedDict
sd = OrderedDict(w=torch.randn(3, 4), b=torch.randn(4).half(), nested={"x": torch.arange(6)[1::2], "n": 3, "s": "str", "l": [1.5, None, True]})
buf = io.BytesIO(); torch.save(sd, buf)
z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
print(z.read([n for n in z.namelist() if n.endswith("data.pkl")][0]).hex())
`).trim();
  pickleBytes = Uint8Array.from(Buffer.from(hex, "hex"));
});

describe("fuzzed inputs", () => {
  it("torch pickles: 3000 mutants", () => {
    // The unmodified pickle unpickles, so the mutants test the error paths and not a broken fixture.
    expect(unpickle("ok.pkl", pickleBytes, torchPickleHooks("ok.pkl"))).toBeInstanceOf(Map);
    for (const m of mutants(pickleBytes, 3000, 7)) expectOnlyFormatErrors(() => unpickle("fuzz.pkl", m, torchPickleHooks("fuzz.pkl")));
  });

  it("safetensors headers: 3000 mutants", async () => {
    const path = join(tmp.dir, "f.safetensors");
    await writeSafetensors(path, mixedStateDict(), { format: "pt" });
    const file = Uint8Array.from(readFileSync(path));
    for (const m of mutants(file.subarray(0, Math.min(file.length, 8 + 2000)), 3000, 11)) {
      // Mutate only the prefix and header; the data bytes cannot make a header invalid.
      const whole = file.slice();
      whole.set(m.subarray(0, Math.min(m.length, whole.length)));
      expectOnlyFormatErrors(() => {
        const n = headerLength("fuzz", whole.subarray(0, 8), whole.length);
        parseHeader("fuzz", whole.subarray(8, 8 + n), whole.length);
      });
    }
  });
});
