/**
 * How sdk/src/tokenizer/ chose its library: the npm `tokenizers` (Rust via napi-rs) and `@huggingface/tokenizers`
 * (pure JS) on the same trained tokenizers and strings as the test suite, against Python `tokenizers`.
 * Fidelity = ids equal to Python's per string (with and without special tokens) and decodes equal to Python's;
 * speed = encode throughput. Not part of the test suite; the loser is not a dependency, so install both first:
 *
 *   ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save tokenizers@0.23.2 @huggingface/tokenizers@0.2.0
 *   npx tsx sdk/test/tokenizer/compare-libraries.ts
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runPythonJson, tempDir } from "../helpers/python.js";
import { makeFixtures } from "./fixtures.js";

interface Lib {
  name: string;
  load(folder: string): Promise<Tok>;
}
interface Tok {
  encode(texts: string[], special: boolean): Promise<number[][]>;
  encodeOneByOne(texts: string[]): Promise<number>;
  decode(ids: number[][], skip: boolean): Promise<string[]>;
}

// Imported by name so the type-check does not need the package that lost.
async function importByName(name: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return import(name);
}

const rust: Lib = {
  name: "tokenizers (Rust, napi-rs) 0.23.2",
  async load(folder) {
    const { Tokenizer } = await importByName("tokenizers");
    const t = Tokenizer.fromFile(join(folder, "tokenizer.json"));
    return {
      async encode(texts, special) {
        const encs = await t.encodeBatch(texts, { addSpecialTokens: special });
        return encs.map((e: { getIds(): number[] }) => e.getIds());
      },
      async encodeOneByOne(texts) {
        let n = 0;
        for (const s of texts) n += (await t.encode(s)).getLength();
        return n;
      },
      async decode(ids, skip) {
        return Promise.all(ids.map((x) => t.decode(x, skip)));
      },
    };
  },
};

const js: Lib = {
  name: "@huggingface/tokenizers (JS) 0.2.0",
  async load(folder) {
    const { Tokenizer } = await importByName("@huggingface/tokenizers");
    const cfgFile = join(folder, "tokenizer_config.json");
    const config = existsSync(cfgFile) ? JSON.parse(readFileSync(cfgFile, "utf8")) : {};
    const t = new Tokenizer(JSON.parse(readFileSync(join(folder, "tokenizer.json"), "utf8")), config);
    return {
      async encode(texts, special) {
        return texts.map((s) => t.encode(s, { add_special_tokens: special }).ids as number[]);
      },
      async encodeOneByOne(texts) {
        let n = 0;
        for (const s of texts) n += t.encode(s).ids.length;
        return n;
      },
      async decode(ids, skip) {
        return ids.map((x) => (x.length === 0 ? "" : (t.decode(x, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }) as string)));
      },
    };
  },
};

function countEqual<T>(a: readonly T[], b: readonly T[]): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (JSON.stringify(a[i]) === JSON.stringify(b[i])) n++;
  return n;
}

async function time(fn: () => Promise<unknown>, reps = 3): Promise<number> {
  await fn();
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best / 1000;
}

const tmp = tempDir("loraport-tokcmp-");
try {
  const { strings, reference } = makeFixtures(tmp.dir);
  const mb = Buffer.byteLength(strings.join(""), "utf8") / 1e6;
  const long = [strings.join("\n")];
  console.log(`${strings.length} strings, ${(mb * 1000).toFixed(0)} kB UTF-8`);
  // Python `tokenizers` on the same strings and machine, for scale.
  const py = runPythonJson<Record<string, [number, number, number]>>(`
import json, sys, time
from tokenizers import Tokenizer
ref = json.load(open(sys.argv[1]))
strings = json.load(open(sys.argv[2]))["strings"]
long = "\\n".join(strings)
def best(f):
    f(); t = []
    for _ in range(3):
        t0 = time.perf_counter(); f(); t.append(time.perf_counter() - t0)
    return min(t)
out = {}
for name, r in ref.items():
    tok = Tokenizer.from_file(r["folder"] + "/tokenizer.json")
    out[name] = [best(lambda: tok.encode_batch(strings)), best(lambda: [tok.encode(s) for s in strings]), best(lambda: tok.encode(long))]
print(json.dumps(out))`, [join(tmp.dir, "reference.json"), join(tmp.dir, "spec.json")]);
  console.log("\n== Python tokenizers 0.23.3 (same strings)");
  for (const [name, [batch, single, longT]] of Object.entries(py)) {
    console.log(`${name.padEnd(10)} batch ${(mb / batch).toFixed(2)} MB/s | one-by-one ${(mb / single).toFixed(2)} MB/s (${((single / strings.length) * 1e6).toFixed(0)} µs/str) | one long text ${(mb / longT).toFixed(2)} MB/s`);
  }
  for (const lib of [rust, js]) {
    console.log(`\n== ${lib.name}`);
    for (const [name, ref] of Object.entries(reference)) {
      let tok: Tok;
      try {
        tok = await lib.load(ref.folder);
      } catch (e) {
        console.log(`${name.padEnd(10)} load failed: ${(e as Error).message.split("\n")[0]}`);
        continue;
      }
      const row: string[] = [];
      try {
        const ids = await tok.encode(strings, true);
        const plain = await tok.encode(strings, false);
        const dec = await tok.decode(ref.ids, false);
        const decSkip = await tok.decode(ref.ids, true);
        const decRand = await tok.decode(ref.rand_ids, false);
        const firstBad = ids.findIndex((x, i) => JSON.stringify(x) !== JSON.stringify(ref.ids[i]));
        row.push(`ids ${countEqual(ids, ref.ids)}/${strings.length}`, `plain ${countEqual(plain, ref.ids_plain)}/${strings.length}`,
          `decode ${countEqual(dec, ref.decode)}/${strings.length}`, `skip ${countEqual(decSkip, ref.decode_skip)}/${strings.length}`,
          `rand-decode ${countEqual(decRand, ref.rand_decode)}/${ref.rand_ids.length}`);
        const batch = await time(() => tok.encode(strings, true));
        const single = await time(() => tok.encodeOneByOne(strings));
        const longT = await time(() => tok.encode(long, true));
        row.push(`batch ${(mb / batch).toFixed(2)} MB/s`, `one-by-one ${(mb / single).toFixed(2)} MB/s (${((single / strings.length) * 1e6).toFixed(0)} µs/str)`, `one long text ${(mb / longT).toFixed(2)} MB/s`);
        if (firstBad >= 0) row.push(`first mismatch #${firstBad} ${JSON.stringify(strings[firstBad]!.slice(0, 40))}`);
      } catch (e) {
        row.push(`failed: ${(e as Error).message.split("\n")[0]}`);
      }
      console.log(`${name.padEnd(10)} ${row.join(" | ")}`);
    }
  }
} finally {
  tmp.cleanup();
}
