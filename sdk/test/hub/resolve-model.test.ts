/**
 * Models by Hub id: a Hugging Face cache laid out by hand around real tiny GPT-2 folders saved by transformers,
 * resolved by loraport by id and id@revision, and cross-checked against what huggingface_hub and transformers
 * (local_files_only) load from the same cache. No network: the offline and unreachable cases use HF_HUB_OFFLINE
 * and a closed local port.
 */
import { mkdirSync, existsSync, cpSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArgumentError, HubModelMissingError, hubCacheDir, mergeModel, openSafetensorsModel, parseHubId, readPeftAdapter, resolveModelPath } from "../../src/index.js";
import { run } from "../../src/cli/main.js";
import { runPython, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const REPO = "loraport-test/tiny-gpt2";
const tmp = tempDir("loraport-hub-");
const cache = join(tmp.dir, "hub");
let commits: { main: string; v1: string };
let adapter: string;
/** huggingface_hub's snapshot folder, transformers' config.json and the first weights it loads, per revision. */
let views: Record<string, { folder: string; config: string; wte: number[] }>;
const savedEnv = { ...process.env };

beforeAll(() => {
  mkdirSync(cache, { recursive: true });
  process.env["HF_HUB_CACHE"] = cache;
  delete process.env["HF_HUB_OFFLINE"];
  const script = join(import.meta.dirname, "fixtures/make_cache.py");
  const out = runPython(`import runpy, sys; sys.argv = ["make_cache.py", *sys.argv[1:]]; runpy.run_path(${JSON.stringify(script)}, run_name="__main__")`, [cache, tmp.dir]);
  ({ commits, adapter, views } = JSON.parse(out.trim().split("\n").at(-1)!) as { commits: { main: string; v1: string }; adapter: string; views: typeof views });
}, limit(180_000));

afterAll(() => {
  process.env = savedEnv;
  tmp.cleanup();
});

async function firstWte(folder: string): Promise<number[]> {
  const model = await openSafetensorsModel(folder);
  try {
    const t = await model.read("transformer.wte.weight");
    return Array.from(t.data as Float32Array).slice(0, 8);
  } finally {
    await model.close();
  }
}

describe("Hub ids", () => {
  it("tells ids from paths by the Hub's naming rules", () => {
    expect(parseHubId("openai-community/gpt2")).toEqual({ repo: "openai-community/gpt2", revision: "main", explicitRevision: false });
    expect(parseHubId("org/name@refs/pr/1")).toMatchObject({ repo: "org/name", revision: "refs/pr/1" });
    for (const notAnId of ["gpt2", "./org/name", "/abs/path", "a/b/c", "org--x/name", "org/na..me", "org/-name", "org/name@", "org/name@../../etc", "org/name@/abs", "base/"]) {
      expect(parseHubId(notAnId), notAnId).toBeUndefined();
    }
  });

  it("finds the cache as huggingface_hub does", () => {
    expect(hubCacheDir({ HF_HUB_CACHE: "/x/hub", HF_HOME: "/y" })).toBe("/x/hub");
    expect(hubCacheDir({ HF_HOME: "/y" })).toBe("/y/hub");
    expect(hubCacheDir({ XDG_CACHE_HOME: "/z" })).toBe("/z/huggingface/hub");
    expect(hubCacheDir({})).toMatch(/\.cache\/huggingface\/hub$/);
  });
});

describe("resolving from a local Hugging Face cache", () => {
  for (const [label, revision, commit] of [
    ["id (refs/main)", undefined, () => commits.main],
    ["id@main", "main", () => commits.main],
    ["id@v1 (a second ref)", "v1", () => commits.v1],
    ["id@<commit hash>", "hash", () => commits.v1],
  ] as const) {
    it(`${label}: the snapshot transformers loads, with the same weights`, async () => {
      const rev = revision === "hash" ? commits.v1 : revision;
      const folder = await resolveModelPath(rev ? `${REPO}@${rev}` : REPO, { download: false });
      expect(folder).toBe(join(cache, "models--loraport-test--tiny-gpt2", "snapshots", commit()));
      const ref = views[rev ?? "main"]!;
      expect(resolve(ref.folder)).toBe(folder);
      expect(resolve(ref.config)).toBe(join(folder, "config.json"));
      // Values as read by loraport from the resolved folder equal the weights transformers loaded.
      expect(await firstWte(folder)).toEqual(ref.wte);
    });
  }

  it("the two revisions hold different weights (so a wrong ref would show)", async () => {
    const a = await firstWte(await resolveModelPath(REPO, { download: false }));
    const b = await firstWte(await resolveModelPath(`${REPO}@v1`, { download: false }));
    expect(a).not.toEqual(b);
  });

  it("a path that exists wins over an id", async () => {
    const cwd = process.cwd();
    const local = join(tmp.dir, "cwd");
    cpSync(join(cache, "models--loraport-test--tiny-gpt2", "snapshots", commits.v1), join(local, REPO), { recursive: true, dereference: true });
    process.chdir(local);
    try {
      expect(await resolveModelPath(REPO, { download: false })).toBe(REPO);
    } finally {
      process.chdir(cwd);
    }
  });

  it("the API takes an id where it takes a model folder: mergeModel(id, ...)", async () => {
    const report = await mergeModel(REPO, (await readPeftAdapter(adapter)).adapter, join(tmp.dir, "merged-api"));
    expect(report.merged.length).toBeGreaterThan(0);
  });

  it("a model argument that is not a string is an ArgumentError naming it", async () => {
    const err = await resolveModelPath(42 as unknown as string, { argument: "--base" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ArgumentError);
    expect((err as Error).message).toMatch(/^--base: expected a model folder or a Hub id/);
  });

  it("the CLI takes --base <id>: merge reads the cached snapshot", async () => {
    const out = join(tmp.dir, "merged");
    const code = await run(["merge", "--base", REPO, "--adapter", adapter, "--out", out]);
    expect(code).toBe(0);
    expect(existsSync(out)).toBe(true);
  }, limit(120_000));
});

describe("a model in no cache and no network", () => {
  it("offline (HF_HUB_OFFLINE): names the id, the cache folder and how to get it", async () => {
    process.env["HF_HUB_OFFLINE"] = "1";
    try {
      const err = await resolveModelPath("loraport-test/absent@v9", { argument: "--base" }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HubModelMissingError);
      const e = err as HubModelMissingError;
      expect(e.id).toBe("loraport-test/absent@v9");
      expect(e.cacheDir).toBe(cache);
      expect(e.message).toContain("--base loraport-test/absent@v9");
      expect(e.message).toContain(cache);
      expect(e.message).toContain("HF_HUB_OFFLINE");
      expect(e.message).toContain("hf download loraport-test/absent --revision v9");
    } finally {
      delete process.env["HF_HUB_OFFLINE"];
    }
  });

  it("a revision the cache lacks is named as such", async () => {
    const err = (await resolveModelPath(`${REPO}@v2`, { download: false }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(HubModelMissingError);
    expect(err.message).toContain("no ref 'v2'");
  });

  it("an unreachable Hub: a one-line error with the network's reason, no hang", async () => {
    const server = createServer();
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((ok) => server.close(() => ok()));
    const err = (await resolveModelPath("loraport-test/absent", { hubUrl: `http://127.0.0.1:${port}` }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(HubModelMissingError);
    expect(err.message).toContain("the Hub cannot be reached");
    expect(err.message).toContain("ECONNREFUSED");
    expect(err.message).not.toContain("\n");
  });

  it("the CLI: exit 1 and one line on stderr", async () => {
    process.env["HF_HUB_OFFLINE"] = "1";
    const lines: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (lines.push(String(s)), true)) as typeof process.stderr.write;
    let code: number;
    try {
      code = await run(["merge", "--base", "loraport-test/absent", "--adapter", adapter, "--out", join(tmp.dir, "never")]);
    } finally {
      process.stderr.write = write;
      delete process.env["HF_HUB_OFFLINE"];
    }
    expect(code).toBe(1);
    expect(lines.join("")).toMatch(/^loraport: --base loraport-test\/absent: no such folder, and not in the Hugging Face cache .*\n$/);
  });
});
