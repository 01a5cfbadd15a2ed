/**
 * The CLI's common surface: `--version`, required options marked in `--help`, one flag vocabulary (`--r`, `--alpha`),
 * a reader closing the pipe early (`| head -c 300`) ends the command quietly, and CPU runs under `auto` stay quiet.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loralibOptions } from "../../src/cli/loralib-options.js";
import { LoraportError } from "../../src/errors.js";
import { writeSafetensors } from "../../src/formats/safetensors/index.js";
import { chooseProviders, cudaUnavailableReason } from "../../src/runtime/providers.js";
import { REPO_ROOT, tempDir } from "../helpers/python.js";
import { cli } from "./cli-fixtures.js";

describe("loraport CLI basics", () => {
  const tmp = tempDir("loraport-cli-basics-");
  const many = join(tmp.dir, "many.safetensors");
  beforeAll(async () => {
    // 20,000 tensors: `inspect --json` prints ~1 MB, far past a pipe's buffer.
    await writeSafetensors(many, new Map(Array.from({ length: 20_000 }, (_, i) => [`layer.${i}.weight`, { dtype: "F32" as const, shape: [1], data: new Float32Array(1) }])));
  });
  afterAll(() => tmp.cleanup());

  it("--version prints package.json's version", async () => {
    const r = await cli(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe((JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version);
  });

  it("--help marks every required option", async () => {
    for (const [command, required] of [["merge", 3], ["combine", 1], ["convert", 1], ["export", 2], ["inspect", 0]] as const) {
      const r = await cli([command, "--help"]);
      expect(r.code, command).toBe(0);
      expect(r.stdout.match(/\(required\)/g)?.length ?? 0, `${command} --help:\n${r.stdout}`).toBe(required);
    }
  });

  it("one rank flag: --r (with --alpha) on run, generate and serve; --lora-r still accepted, unlisted; both must agree", async () => {
    for (const command of ["run", "generate", "serve"]) {
      const help = (await cli([command, "--help"])).stdout.replace(/\s+/g, " "); // help wraps to the terminal
      expect(help, command).toMatch(/--r <n> LoRA rank r of an --adapter given as a loralib checkpoint/);
      expect(help, command).toMatch(/--alpha <n> lora_alpha of an --adapter given as a loralib/);
      expect(help, command).not.toContain("--lora-r");
    }
    expect(loralibOptions({ r: "4", alpha: "8" }, true)).toMatchObject({ r: 4, alpha: 8 });
    expect(loralibOptions({ loraR: "4" }, true)).toMatchObject({ r: 4 });
    expect(() => loralibOptions({ r: "4", loraR: "8" }, true)).toThrow(LoraportError);
    expect(() => loralibOptions({ r: "x" }, true)).toThrow(/--r x: expected a positive number/);
  });

  it("a reader that closes the pipe early: the command ends quietly, exit 0, no EPIPE stack trace", () => {
    const r = spawnSync("bash", ["-c", `"${process.execPath}" bin/loraport.js inspect --json "${many}" | head -c 300 >/dev/null; echo "rc=\${PIPESTATUS[0]}"`], { cwd: REPO_ROOT, encoding: "utf8", timeout: 300_000 });
    expect(r.stderr).not.toMatch(/EPIPE|\n\s+at /);
    expect(r.stdout.trim()).toBe("rc=0");
  });

  it("under the default `auto`, a machine without an NVIDIA GPU gets no CUDA note; a note is said at most once and short", () => {
    const first = chooseProviders("auto");
    const second = chooseProviders("auto");
    expect(second.note).toBeUndefined();
    const why = cudaUnavailableReason();
    if (why?.startsWith("no NVIDIA GPU")) expect(first.note).toBeUndefined();
    if (first.note) expect(first.note.length).toBeLessThan(130);
    // Asked for explicitly, the full reason is given.
    if (why) expect(chooseProviders(["cuda", "cpu"]).note).toContain(why);
  });
});
