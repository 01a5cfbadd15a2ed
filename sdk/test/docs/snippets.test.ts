/**
 * The README's and docs' snippets, as written: every TypeScript snippet of README.md and docs/*.md is type-checked
 * (its copy in snippets/, kept equal to the docs here) and run with tsx against this repository, in a fresh folder
 * holding the files the snippets name (made by transformers and PEFT in this run); each must exit by itself. Shell
 * snippets run there too (`npx loraport` = this repository's built CLI), except the commands listed in SH_NOT_RUN,
 * each with its reason.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as api from "../../src/index.js";
import { writeByteTokenizer } from "../../src/cli/demo/byte-tokenizer.js";
import { referenceDir } from "../../src/reference.js";
import { REPO_ROOT, runPython, tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { extractSnippets, shellCommands, snippetFileName, snippetModule } from "./snippets.js";

/** TypeScript snippets not run here, by `doc#index`, and why. They are still type-checked. */
const TS_NOT_RUN: Record<string, string> = {
  "docs/serving.md#3": "VllmEngine.start launches vLLM (minutes to start on CPU); run by sdk/test/serving's vLLM test",
  "docs/training.md#1": "needs a train-step artifact (export --mode train-step, about a minute on 2 cores); the same calls run in sdk/test/training/trainer.test.ts and examples/finetune-tiny-gpt2.ts",
  "docs/training.md#2": "trains a base with torchrun, two processes (minutes); the torch engine's own tests run it",
};

/** Shell commands not run here, by their start, and why. */
const SH_NOT_RUN: ReadonlyArray<readonly [string, string]> = [
  ["npm run setup && npx loraport demo", "`npm test` runs the set-up first; the demo runs in sdk/test/cli/demo.test.ts"],
  ["npm test", "it is the suite this test is part of"],
  ["npm install /path/to/loraport-0.1.0.tgz", "sdk/test/package/install.test.ts installs the packed tarball in a fresh project"],
  ["npx loraport setup-python", "would install into this repository's .venv were it out of date; sdk/test/package runs it on the installed package"],
  ["npx loraport merge --base openai-community/gpt2-medium", "needs GPT-2 Medium from the Hub (1.4 GB; CI has no network); Hub ids are tested on a local cache in sdk/test/hub"],
  ["npx loraport merge --unmerge --base merged/", "unmerges the GPT-2 Medium merge above"],
  ["npx loraport export --base openai-community/gpt2-medium", "needs GPT-2 Medium from the Hub (as the merge)"],
  ["npx loraport run --model onnx/ --adapter gpt2-e2e-peft", "the E2E adapter needs the GPT-2 Medium export"],
  ["npx loraport generate --model onnx/ --adapter gpt2-e2e-peft", "the E2E adapter needs the GPT-2 Medium export"],
  ["npx loraport serve --model onnx/ --adapter e2e=gpt2-e2e-peft", "the E2E adapter needs the GPT-2 Medium export"],
  ["npx loraport conformance --report", "the conformance suite (minutes) runs as conformance/conformance.test.ts"],
  ["npx loraport export --base path/to/hf-model --out onnx/", "the README's TypeScript snippet makes this export (sc.exportOnnx) in this test"],
  ["npx loraport export --base path/to/hf-model --out onnx-merged/ --mode merged", "a second export (~30 s); merged exports are tested in sdk/test/runtime and sdk/test/generation"],
  ["ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node", "downloads the CUDA provider and replaces the shared install"],
  ["loraport export --base <HF model folder>", "a synopsis with placeholders, not a command"],
  ["loraport train --engine torch --base <HF folder>", "a synopsis with placeholders, not a command"],
];

/** Long-running commands: started, awaited until they print this, and stopped after the next TypeScript snippet. */
const SERVERS: ReadonlyArray<readonly [string, RegExp]> = [["npx loraport serve --model onnx/ --adapter support=", /listening on http/]];

const TSX = join(REPO_ROOT, "node_modules/.bin/tsx");
/** The built CLI, as `npx loraport` runs it (`npm test` builds first; a stale dist/ means stale results). */
const CLI = join(REPO_ROOT, "bin/loraport.js");
const snippets = extractSnippets(REPO_ROOT);
const tmp = tempDir("loraport-docs-");
/** The snippets' working folder; `../shared/reference` beside it is the reference folder, as beside the repo. */
const work = join(tmp.dir, "work");
const env = { ...process.env, HF_HUB_OFFLINE: "1", FORCE_COLOR: "0" };
let server: ChildProcess | undefined;

function stopServer(): Promise<void> {
  const s = server;
  server = undefined;
  if (!s || s.exitCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    // The command runs under bash in its own process group: signal the whole group, as Ctrl-C would.
    const force = setTimeout(() => process.kill(-s.pid!, "SIGKILL"), limit(20_000));
    s.on("exit", () => (clearTimeout(force), ok()));
    process.kill(-s.pid!, "SIGINT");
  });
}

/** Run `command` (or `file` with tsx) in the work folder; resolves with its output, rejects naming it on failure. */
function runIn(argv: readonly string[], label: string, waitFor?: RegExp): Promise<string> {
  return new Promise((ok, fail) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: work, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let out = "";
    const timer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), limit(300_000));
    const take = (d: Buffer): void => {
      out += d.toString();
      if (waitFor?.test(out)) {
        clearTimeout(timer);
        server = child;
        ok(out);
      }
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && !waitFor) ok(out);
      else fail(new Error(`${label}: exit ${code ?? signal}\n${out.slice(-3000)}`));
    });
  });
}

function shell(command: string): string[] {
  // `npx loraport` is this repository's CLI, without npx's own look-up (which could try the registry).
  const shim = `npx() { if [ "$1" = loraport ]; then shift; node ${JSON.stringify(CLI)} "$@"; else command npx "$@"; fi; }`;
  return ["bash", "-c", `${shim}\n${command}`];
}

beforeAll(() => {
  mkdirSync(join(tmp.dir, "shared"), { recursive: true });
  symlinkSync(referenceDir(), join(tmp.dir, "shared", "reference"));
  mkdirSync(work);
  // A project of the user's: ESM, "loraport" mapped to this repository's sources, its dependencies at hand.
  writeFileSync(join(work, "package.json"), JSON.stringify({ type: "module", private: true }));
  writeFileSync(join(work, "tsconfig.json"), JSON.stringify({ compilerOptions: { module: "nodenext", moduleResolution: "nodenext", target: "es2022", paths: { loraport: [join(REPO_ROOT, "sdk/src/index.ts")] } } }));
  symlinkSync(join(REPO_ROOT, "node_modules"), join(work, "node_modules"));
  runPython(readFileSync(join(import.meta.dirname, "fixtures.py"), "utf8"), [work]);
  writeByteTokenizer(join(work, "path/to/hf-model"));
  writeFileSync(join(work, "chat.json"), JSON.stringify([{ role: "user", content: "Hi" }]));
}, limit(180_000));

afterAll(async () => {
  await stopServer();
  tmp.cleanup();
});

describe("the docs' snippets", () => {
  it("snippets/ holds every TypeScript snippet as written (rerun gen-snippets.ts after editing a doc)", () => {
    const ts = snippets.filter((s) => s.lang === "ts");
    const dir = join(import.meta.dirname, "snippets");
    expect(readdirSync(dir).sort()).toEqual(ts.map(snippetFileName).sort());
    for (const s of ts) expect(readFileSync(join(dir, snippetFileName(s)), "utf8"), snippetFileName(s)).toBe(snippetModule(s));
  });

  it("the README's API table names real exports", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const table = readme.slice(readme.indexOf("|---|---|---|"), readme.indexOf("Every command takes"));
    const names = [...table.matchAll(/^\|[^|]*\|[^|]*\|([^|]*)\|$/gm)].flatMap((m) => [...m[1]!.matchAll(/`([A-Za-z]\w*)/g)].map((n) => n[1]!));
    expect(names.length).toBeGreaterThan(20);
    // Values are exports of the package; interfaces (e.g. `Engine`) are exported types, found in the sources.
    const sources = execFileSync("grep", ["-rhoE", "export (interface|type) \\w+", join(REPO_ROOT, "sdk/src")], { encoding: "utf8" });
    const types = new Set(sources.split("\n").map((l) => l.split(" ")[2]));
    const missing = names.filter((n) => n !== "sc" && !(n in api) && !types.has(n));
    expect(missing).toEqual([]);
  });

  it("every snippet not run is still there (no stale reasons), and every reason is given", () => {
    for (const key of Object.keys(TS_NOT_RUN)) expect(snippets.some((s) => s.lang === "ts" && `${s.doc}#${s.index}` === key), key).toBe(true);
    const commands = snippets.filter((s) => s.lang === "sh").flatMap(shellCommands);
    for (const [start] of SH_NOT_RUN) expect(commands.some((c) => c.startsWith(start)), start).toBe(true);
  });

  // In document order: later snippets use what earlier ones made (the README's export, the converted adapter).
  for (const s of snippets) {
    const where = `${s.doc} ${s.lang} ${s.index} (line ${s.line})`;
    if (s.lang === "ts") {
      const skip = TS_NOT_RUN[`${s.doc}#${s.index}`];
      it.skipIf(skip !== undefined)(`${where} runs and exits by itself`, async () => {
        const file = join(work, `snippet-${snippetFileName(s)}`);
        writeFileSync(file, s.code);
        try {
          await runIn([TSX, file], where);
        } finally {
          await stopServer();
        }
      }, limit(300_000));
      continue;
    }
    const commands = shellCommands(s).filter((c) => !SH_NOT_RUN.some(([start]) => c.startsWith(start)));
    if (commands.length === 0) continue;
    it(`${where}: ${commands.map((c) => c.split(/\s+/).slice(0, 3).join(" ")).join("; ")}`, async () => {
      for (const c of commands) {
        const wait = SERVERS.find(([start]) => c.startsWith(start))?.[1];
        await runIn(shell(c), `${where}: ${c}`, wait);
      }
    }, limit(600_000));
  }
});

