/** Writes sdk/test/docs/snippets/*.ts, the docs' TypeScript snippets as modules for `npm run typecheck`. */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { extractSnippets, snippetFileName, snippetModule } from "./snippets.js";

const root = resolve(import.meta.dirname, "../../..");
const dir = join(import.meta.dirname, "snippets");
mkdirSync(dir, { recursive: true });
for (const f of readdirSync(dir)) rmSync(join(dir, f));
for (const s of extractSnippets(root).filter((x) => x.lang === "ts")) writeFileSync(join(dir, snippetFileName(s)), snippetModule(s));
console.log(`wrote ${readdirSync(dir).length} snippets to ${dir}`);
