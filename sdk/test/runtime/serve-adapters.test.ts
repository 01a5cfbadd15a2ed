/**
 * examples/serve-adapters.ts: started on 127.0.0.1 with an ephemeral port; both adapters (and the base) answered
 * per request, checked against PyTorch + PEFT on the same base and adapter folders, computed in Python here.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, runPythonJson, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

const tmp = tempDir("loraport-serve-");
let server: ChildProcess | undefined;
let url = "";
/** The example server's stderr (and stdout): shown when a request fails, so a crash names its cause. */
let serverLog = "";
let logitsRef: Record<string, number[]>;
let generateRef: Record<string, number[]>;
const IDS = [1, 5, 9, 17, 33];
const IDS2 = [40, 2, 77, 3, 12];

beforeAll(async () => {
  server = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "examples/serve-adapters.ts"), "--port", "0", "--cache", tmp.dir], {
    cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"],
  });
  server.stderr!.on("data", (d: Buffer) => (serverLog = (serverLog + d.toString()).slice(-8000)));
  url = await new Promise<string>((resolve, reject) => {
    let out = "";
    server!.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    server!.on("exit", (code) => reject(new Error(`server exited (${code}): ${serverLog.slice(-2000)}`)));
  });
  // References before any request: a synchronous Python run between requests would block this event loop while the
  // server closes idle keep-alive sockets, and fetch would then reuse a closed one ("other side closed").
  logitsRef = runPythonJson<Record<string, number[]>>(`
import sys, json, torch
from peft import PeftModel
from loraport_sidecar.reference import tiny_models as t
d = sys.argv[1]
ids = torch.tensor([${IDS.join(",")}]).unsqueeze(0)
ids2 = torch.tensor([${IDS2.join(",")}]).unsqueeze(0)
out = {}
with torch.no_grad():
    out["base"] = t.gpt2()(input_ids=ids).logits[0, -1].tolist()
    for name in ("alpha", "beta"):
        m = PeftModel.from_pretrained(t.gpt2(), d + "/adapter-" + name).eval()
        out[name] = m(input_ids=ids).logits[0, -1].tolist()
        out[name + "_row2"] = m(input_ids=ids2).logits[0, -1].tolist()
print(json.dumps(out))
`, [tmp.dir]);
  generateRef = runPythonJson<Record<string, number[]>>(`
import sys, json, torch
from peft import PeftModel
from loraport_sidecar.reference import tiny_models as t
d = sys.argv[1]
ids = torch.tensor([${IDS.join(",")}]).unsqueeze(0)
out = {}
def gen(m):
    with torch.no_grad():
        return m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12)[0, ids.shape[1]:].tolist()
out["base"] = gen(t.gpt2())
for name in ("alpha", "beta"):
    out[name] = gen(PeftModel.from_pretrained(t.gpt2(), d + "/adapter-" + name).eval())
print(json.dumps(out))
`, [tmp.dir]);
}, limit(360_000));

afterAll(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server!.once("exit", r));
    server.kill("SIGTERM");
    await exited;
  }
  tmp.cleanup();
});

async function post(body: unknown, path = "/v1/logits"): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, { method: "POST", body: JSON.stringify(body) }).catch((err: unknown) => {
    throw new Error(`POST ${path} failed (${(err as Error).message}); server exit ${server?.exitCode ?? "-"} ${server?.signalCode ?? ""}; its log: ${serverLog.slice(-3000)}`);
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe("examples/serve-adapters.ts", () => {
  it("serves both adapters and the base on one model, matching PyTorch + PEFT", async () => {
    const ref = logitsRef;
    const listed = (await (await fetch(`${url}/v1/adapters`)).json()) as { adapters: string[] };
    expect(listed.adapters.sort()).toEqual(["alpha", "beta"]);
    // Concurrent, interleaved requests for different adapters.
    const names = ["alpha", "beta", null, "beta", "alpha"] as const;
    const answers = await Promise.all(names.map((a) => post({ adapter: a, ids: IDS })));
    for (const [i, a] of names.entries()) {
      const { status, json } = answers[i]!;
      expect(status).toBe(200);
      expect(json["adapter"]).toBe(a);
      const got = json["logits"] as number[];
      const want = ref[a ?? "base"]!;
      const err = Math.max(...got.map((x, j) => Math.abs(x - want[j]!)));
      expect(err).toBeLessThanOrEqual(1e-4);
    }
    const diff = Math.max(...ref["alpha"]!.map((x, j) => Math.abs(x - ref["beta"]![j]!)));
    expect(diff).toBeGreaterThan(1e-3); // the two adapters really differ
  });

  it("a batch request gets every row's logits (each equal to PyTorch + PEFT on that sequence alone)", async () => {
    const maxErr = (got: number[], want: number[]): number => Math.max(...got.map((x, j) => Math.abs(x - want[j]!)));
    const { status, json } = await post({ adapter: "beta", ids: [IDS, IDS2] });
    expect(status, JSON.stringify(json).slice(0, 300)).toBe(200);
    const rows = json["logits"] as number[][];
    expect(rows).toHaveLength(2);
    expect(maxErr(rows[0]!, logitsRef["beta"]!)).toBeLessThanOrEqual(1e-4);
    expect(maxErr(rows[1]!, logitsRef["beta_row2"]!)).toBeLessThanOrEqual(1e-4);
    expect(maxErr(logitsRef["beta"]!, logitsRef["beta_row2"]!)).toBeGreaterThan(1e-3); // the rows really differ
  });

  it("generates text per adapter: greedy tokens equal transformers + PEFT generate", async () => {
    const ref = generateRef;
    const names = ["alpha", "beta", null] as const;
    const answers = await Promise.all(names.map((a) => post({ adapter: a, ids: IDS, max_new_tokens: 12 }, "/v1/generate")));
    for (const [i, a] of names.entries()) {
      expect(answers[i]!.status).toBe(200);
      expect(answers[i]!.json["tokens"], `adapter ${a}`).toEqual(ref[a ?? "base"]);
    }
    expect(ref["alpha"]).not.toEqual(ref["beta"]);
  });

  it("answers bad requests with 400 and a message", async () => {
    const ragged = await post({ ids: [[1, 2], [3, 4, 5]] });
    expect(ragged.status).toBe(400);
    expect(String(ragged.json["error"])).toMatch(/batch rows have 2, 3 tokens; send rows of one length/);
    const unknown = await post({ adapter: "gamma", ids: IDS });
    expect(unknown.status).toBe(400);
    expect(String(unknown.json["error"])).toMatch(/gamma.*not registered/);
    const bad = await post({ ids: "1,2" });
    expect(bad.status).toBe(400);
  });
});
