import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../src/cli/main.js";
import { REPO_ROOT, runPythonJson, tempDir } from "../helpers/python.js";

const tmp = tempDir("loraport-cli-");
afterAll(() => tmp.cleanup());

/** Run the CLI in this process, capturing what it writes (the commands write through process.stdout/stderr). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const realOut = process.stdout.write.bind(process.stdout);
  const realErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => out.push(String(chunk)) > 0) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => err.push(String(chunk)) > 0) as typeof process.stderr.write;
  try {
    const code = await run(args);
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    process.stdout.write = realOut;
    process.stderr.write = realErr;
  }
}

/** The same as a separate process (exit status and streams of a real run). */
function cliProcess(args: string[]): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(process.execPath, ["--import", "tsx", join(import.meta.dirname, "cli-entry.ts"), ...args], {
      cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000,
    });
    return { code: 0, stdout, stderr: "" };
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    return { code: x.status, stdout: x.stdout, stderr: x.stderr };
  }
}

interface Made {
  st: { tensors: Array<{ name: string; dtype: string; shape: number[] }>; metadata: Record<string, string> };
  pt: Array<{ name: string; dtype: string; shape: number[] }>;
}
let made: Made;

beforeAll(() => {
  // A safetensors file, a torch checkpoint with tied weights, and the bytes Python's save_file writes for its deduplicated state dict.
  made = runPythonJson<Made>(`
import sys, json, torch
from safetensors.torch import save_file
d = sys.argv[1]
g = torch.Generator().manual_seed(1)
st = {"b.weight": torch.randn(3, 4, generator=g), "a.bias": torch.randn(4, generator=g).half(), "steps": torch.arange(5)}
save_file(st, d + "/w.safetensors", metadata={"format": "pt"})
emb = torch.nn.Embedding(10, 4)
head = torch.nn.Linear(4, 10, bias=False)
head.weight = emb.weight
model = torch.nn.ModuleDict({"emb": emb, "head": head, "norm": torch.nn.LayerNorm(4)})
sd = model.state_dict()
sd["view"] = sd["emb.weight"][2:5].t()
torch.save(sd, d + "/tied.pt")
loaded = torch.load(d + "/tied.pt", weights_only=True)
kept, seen = {}, set()
for k, v in loaded.items():
    ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride(), v.dtype)
    if ident in seen: continue
    seen.add(ident)
    kept[k] = v.contiguous().clone()
save_file(kept, d + "/tied.expected.safetensors", metadata={"format": "pt"})
DT = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
print(json.dumps({
  "st": {"tensors": sorted([{"name": k, "dtype": DT[v.dtype], "shape": list(v.shape)} for k, v in st.items()], key=lambda x: x["name"]), "metadata": {"format": "pt"}},
  "pt": [{"name": k, "dtype": DT[v.dtype], "shape": list(v.shape)} for k, v in loaded.items()],
}))
`, [tmp.dir]);
});

describe("loraport inspect", () => {
  it("--json on a safetensors file prints exactly {format, tensors, metadata}", async () => {
    const r = await cli(["inspect", join(tmp.dir, "w.safetensors"), "--json"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { format: string; tensors: Array<{ name: string }>; metadata: unknown };
    expect(Object.keys(out)).toEqual(["format", "tensors", "metadata"]);
    expect(out.format).toBe("safetensors");
    expect([...out.tensors].sort((a, b) => (a.name < b.name ? -1 : 1))).toEqual(made.st.tensors);
    expect(out.metadata).toEqual(made.st.metadata);
  });

  it("--json on a torch checkpoint lists what torch.load returns", async () => {
    const r = await cli(["inspect", join(tmp.dir, "tied.pt"), "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ format: "torch", tensors: made.pt, metadata: {} });
  });

  it("prints a table with byte sizes", async () => {
    const r = await cli(["inspect", join(tmp.dir, "w.safetensors")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("safetensors, 3 tensors");
    expect(r.stdout).toMatch(/b\.weight\s+F32\s+\[3, 4\]\s+48\n/);
    expect(r.stdout).toMatch(/a\.bias\s+F16\s+\[4\]\s+8\n/);
    expect(r.stdout).toContain('metadata format = "pt"');
  });
});

describe("loraport convert", () => {
  it("writes what Python save_file writes for the same (deduplicated) state dict, tied weights once", async () => {
    const out = join(tmp.dir, "tied.safetensors");
    const r = await cli(["convert", join(tmp.dir, "tied.pt"), "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("'head.weight' shares its tensor with 'emb.weight'");
    expect(readFileSync(out).equals(readFileSync(join(tmp.dir, "tied.expected.safetensors")))).toBe(true);
  });
});

describe("bad input: one line on stderr, non-zero exit, no stack trace", () => {
  beforeAll(() => {
    const b = readFileSync(join(tmp.dir, "w.safetensors"));
    writeFileSync(join(tmp.dir, "cut.safetensors"), b.subarray(0, b.length - 5));
    writeFileSync(join(tmp.dir, "junk.pt"), "not a checkpoint at all");
  });
  const cases: Array<[string, () => string[], RegExp]> = [
    ["missing file", () => ["inspect", join(tmp.dir, "nope.safetensors")], /nope\.safetensors: no such file/],
    ["truncated safetensors", () => ["inspect", join(tmp.dir, "cut.safetensors")], /cut\.safetensors: tensor data ends at byte \d+ of the data section, past the end of the file/],
    ["junk", () => ["inspect", join(tmp.dir, "junk.pt"), "--json"], /junk\.pt: neither a safetensors file nor a torch\.save zip checkpoint/],
    ["convert of a safetensors file", () => ["convert", join(tmp.dir, "w.safetensors"), "--out", join(tmp.dir, "x.safetensors")], /already a safetensors file/],
    ["convert to an unknown target", () => ["convert", join(tmp.dir, "tied.pt"), "--out", join(tmp.dir, "x.safetensors"), "--to", "tflite"], /--to tflite: unknown target/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const r = await cli(args());
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe("");
      const lines = r.stderr.trim().split("\n");
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^loraport: /);
      expect(lines[0]).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  it("as a real process: exit status 1 and the one line on stderr", () => {
    const r = cliProcess(["inspect", join(tmp.dir, "nope.safetensors")]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(`loraport: ${join(tmp.dir, "nope.safetensors")}: no such file\n`);
  });
});
