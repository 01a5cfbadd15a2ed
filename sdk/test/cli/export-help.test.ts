/** `loraport export`'s vocabulary: real preset names, one rank flag (`--r`, with `--lora-r` as a hidden old name). */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LORALIB_PRESETS } from "../../src/adapter/presets.js";
import { tempDir } from "../helpers/python.js";
import { cli } from "./cli-fixtures.js";

const tmp = tempDir("loraport-export-help-");
afterAll(() => tmp.cleanup());

describe("export --help", () => {
  it("names the presets that exist, --r for the rank of both uses, and --alpha for both uses", async () => {
    const r = await cli(["export", "--help"]);
    expect(r.code).toBe(0);
    const help = (r.stdout + r.stderr).replace(/\s+/g, " "); // commander wraps to the terminal width
    for (const p of LORALIB_PRESETS) expect(help).toContain(p.name);
    const presetLine = help.slice(help.indexOf("--preset"), help.indexOf("--json"));
    for (const name of presetLine.match(/[a-z0-9]+(?:-[a-z0-9]+)+/g) ?? []) {
      if (/^(gpt2|roberta|deberta)/.test(name)) expect(LORALIB_PRESETS.map((p) => p.name), name).toContain(name);
    }
    expect(help).toMatch(/--r <n> LoRA rank r: of the fresh adapter with --mode train-step \(default 8\); of a loralib --adapter checkpoint/);
    expect(help).toMatch(/--alpha <n> LoRA alpha: of the fresh adapter with --mode train-step \(default 16\); of a loralib --adapter checkpoint/);
    expect(help).not.toContain("--lora-r");
  });

  it("--lora-r still works as the old name of --r, and the two must agree", async () => {
    const base = join(tmp.dir, "base");
    mkdirSync(base, { recursive: true });
    writeFileSync(join(base, "config.json"), "{}");
    const clash = await cli(["export", "--base", base, "--out", join(tmp.dir, "o"), "--mode", "train-step", "--r", "4", "--lora-r", "8"]);
    expect(clash.code).toBe(1);
    expect(clash.stderr).toMatch(/--r 4 and --lora-r 8: the same option under two names/);
    const bad = await cli(["export", "--base", base, "--out", join(tmp.dir, "o"), "--mode", "train-step", "--lora-r", "0"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--r 0: expected a positive integer/);
  });
});
