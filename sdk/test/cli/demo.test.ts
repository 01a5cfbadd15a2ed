/**
 * The README's first command ends in `npx loraport demo`: this runs it the way a user does (the built CLI in
 * bin/, which `npm test`'s set-up step builds) and checks that every step of the main path ran and said so.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEMO_STEPS } from "../../src/cli/demo/steps.js";
import { REPO_ROOT } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";

describe("loraport demo", () => {
  it("runs the main path end to end on its built-in default: every step, no error", () => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/loraport.js"), "demo"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 600_000 });
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.status, out.slice(-3000)).toBe(0);
    for (const [i, step] of DEMO_STEPS.entries()) expect(r.stdout).toContain(`[${i + 1}/${DEMO_STEPS.length}] ${step.title}`);
    expect(r.stdout).toContain("demo finished.");
    // It says where its files go and that they are deleted (--keep keeps them), and they are.
    const folder = /work folder: (\S+) \(deleted afterwards; --keep keeps it\)/.exec(r.stdout)?.[1];
    expect(folder, r.stdout.slice(0, 500)).toBeDefined();
    expect(r.stdout).toContain(`work folder deleted: ${folder}`);
    expect(existsSync(folder!)).toBe(false);
    expect(r.stdout).not.toMatch(/…\)$/m); // no message cut off mid-sentence
    expect(r.stderr).not.toMatch(/\n\s+at .*\.(js|ts):\d+/); // no stack trace anywhere
  }, limit(600_000));
});
