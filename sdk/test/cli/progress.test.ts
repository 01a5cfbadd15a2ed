/**
 * Progress of long steps: the exporter's phase events through the real sidecar (a tiny GPT-2 saved by
 * transformers in this run), the CLI's phase lines with --progress, and silence with --json off a terminal.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Sidecar } from "../../src/bridge/sidecar.js";
import { phaseLines, progressStyle } from "../../src/cli/progress-bar.js";
import type { ProgressEvent } from "../../src/progress.js";
import { runPython, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { cli } from "./cli-fixtures.js";

const tmp = tempDir("loraport-progress-");
const base = join(tmp.dir, "base");
/** The exporter's stage names, read from the Python module (not copied here). */
let stages: string[];
let layers: number;

beforeAll(() => {
  const out = runPython(`
import sys, json
from loraport_sidecar.reference import tiny_models
from loraport_sidecar.export.onnx_export import STAGES
m = tiny_models.gpt2(seed=1)
tiny_models.save(m, sys.argv[1])
print(json.dumps({"stages": list(STAGES), "layers": m.config.n_layer}))
`, [base]).trim().split("\n");
  ({ stages, layers } = JSON.parse(out[out.length - 1]!) as { stages: string[]; layers: number });
}, limit(300_000));
afterAll(() => tmp.cleanup());

/** With stderr taken for a non-terminal (as under CI or a pipe), whatever vitest's own stderr is. */
async function offTerminal<T>(fn: () => Promise<T>): Promise<T> {
  const had = Object.getOwnPropertyDescriptor(process.stderr, "isTTY");
  Object.defineProperty(process.stderr, "isTTY", { value: false, configurable: true });
  try {
    return await fn();
  } finally {
    if (had) Object.defineProperty(process.stderr, "isTTY", had);
    else delete (process.stderr as { isTTY?: boolean }).isTTY;
  }
}

describe("exportOnnx progress events (API)", () => {
  it("announces every stage in order, per block while capturing, done ≤ total, ending at total", async () => {
    const events: ProgressEvent[] = [];
    await using sc = await Sidecar.start();
    const res = await sc.exportOnnx(base, join(tmp.dir, "api"), { kvCache: false, onProgress: (e) => events.push(e) });
    expect(existsSync(join(res.out, "model.onnx"))).toBe(true);

    const stageEvents = events.filter((e) => e.phase === "export");
    expect(stageEvents.map((e) => e.done)).toEqual([...stages.keys(), stages.length]);
    expect(stageEvents.slice(0, -1).map((e) => e.message)).toEqual(stages);
    for (const e of events) {
      expect(e.total, JSON.stringify(e)).toBeDefined();
      expect(e.done, JSON.stringify(e)).toBeLessThanOrEqual(e.total!);
    }
    expect(stageEvents.at(-1)).toMatchObject({ done: stages.length, total: stages.length, unit: "stages" });

    // Per-block events come between "capturing" and "converting", and end at the model's layer count.
    const capture = events.map((e, i) => [e, i] as const).filter(([e]) => e.phase === "export.capture");
    const at = (stage: number): number => events.findIndex((e) => e.phase === "export" && e.done === stage);
    expect(capture.length).toBeGreaterThan(0);
    for (const [e, i] of capture) {
      expect(e.unit).toBe("layers");
      expect(e.total).toBe(layers);
      expect(i).toBeGreaterThan(at(2));
      expect(i).toBeLessThan(at(3));
    }
    expect(capture.at(-1)![0].done).toBe(layers);
    const dones = capture.map(([e]) => e.done);
    expect(dones).toEqual([...dones].sort((x, y) => x - y));
  }, limit(300_000));
});

describe("export progress in the CLI", () => {
  it("--progress --json: phase lines on stderr, and stdout is only the JSON result", async () => {
    const r = await offTerminal(() => cli(["export", "--base", base, "--out", join(tmp.dir, "cli-p"), "--no-kv-cache", "--json", "--progress"]));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ mode: "adapter-inputs" });
    const lines = r.stderr.split("\n").filter((l) => l.startsWith("loraport: export "));
    // Every stage gets its line, in order (the stage names come from the exporter itself).
    const shown = stages.map((s) => lines.findIndex((l) => l.includes(s)));
    expect(shown.every((i) => i >= 0), r.stderr).toBe(true);
    expect(shown).toEqual([...shown].sort((x, y) => x - y));
    expect(r.stderr).toMatch(/^loraport: sidecar 0\/1 processes/m);
    expect(r.stderr).toMatch(new RegExp(`^loraport: export ${stages.length}/${stages.length} stages · done`, "m"));
  }, limit(300_000));

  it("--json off a terminal without --progress: nothing but the JSON result", async () => {
    const r = await offTerminal(() => cli(["export", "--base", base, "--out", join(tmp.dir, "cli-q"), "--no-kv-cache", "--json"]));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ mode: "adapter-inputs" });
    expect(r.stderr).toBe("");
  }, limit(300_000));
});

describe("progress style and phase lines", () => {
  it("a bar on a terminal, lines when asked off one or with --json, nothing otherwise", () => {
    expect(progressStyle({}, true)).toBe("bar");
    expect(progressStyle({ json: true }, true)).toBe("off");
    expect(progressStyle({}, false)).toBe("off");
    expect(progressStyle({ progress: true }, false)).toBe("lines");
    expect(progressStyle({ progress: true, json: true }, true)).toBe("lines");
    expect(progressStyle({ progress: true }, true)).toBe("bar");
  });

  it("one line per coarse step, per phase start and end; long loops at most every 2 s", () => {
    const out: string[] = [];
    let t = 0;
    const lines = phaseLines((s) => out.push(s), () => t);
    lines.onProgress({ phase: "export", done: 0, total: 3, unit: "stages", message: "loading" });
    lines.onProgress({ phase: "export", done: 0, total: 3, unit: "stages", message: "loading" }); // repeat: no line
    for (let i = 0; i <= 1000; i++) {
      t += 10; // 10 s over the loop: about five lines, plus its start and end
      lines.onProgress({ phase: "merge", done: i, total: 1000, unit: "tensors" });
    }
    lines.onProgress({ phase: "export", done: 3, total: 3, unit: "stages", message: "done" });
    const merge = out.filter((l) => l.includes(" merge "));
    expect(out[0]).toMatch(/^loraport: export 0\/3 stages · loading \(0\.0 s\)\n$/);
    expect(merge.length).toBeGreaterThanOrEqual(5);
    expect(merge.length).toBeLessThanOrEqual(8);
    expect(merge.at(-1)).toMatch(/merge 1000\/1000 tensors/);
    expect(out.at(-1)).toMatch(/export 3\/3 stages · done \(10\.0 s\)/);
    lines.stop();
    lines.onProgress({ phase: "after", done: 0 });
    expect(out.at(-1)).not.toMatch(/after/);
  });

  it("a long step without events gets a 'still running' line now and then, and none once its phase ended", async () => {
    const out: string[] = [];
    const lines = phaseLines((s) => out.push(s), () => performance.now(), 60);
    lines.onProgress({ phase: "export", done: 3, total: 8, unit: "stages", message: "converting to ONNX" });
    const still = (): string[] => out.filter((l) => /export 3\/8 stages · converting to ONNX, still running/.test(l));
    // Wait for two (timers run late on a loaded machine; the limit only stops a hang).
    for (const t0 = Date.now(); still().length < 2 && Date.now() - t0 < limit(20_000);) await new Promise((r) => setTimeout(r, 50));
    expect(still().length, out.join("")).toBeGreaterThanOrEqual(2);
    lines.onProgress({ phase: "export", done: 8, total: 8, unit: "stages", message: "done" });
    const n = out.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(out.length).toBe(n);
    lines.stop();
  });
});
