/** Writing the report files (each through a temp file in the same folder, then renamed). */
import { basename, dirname, extname, join } from "node:path";
import { mkdirSync } from "node:fs";
import { writeAll, writeFileAtomic } from "../formats/atomic-file.js";
import type { ConformanceReport } from "./report.js";
import { renderHtml, renderMarkdown } from "./render.js";

async function writeText(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, async (fh) => {
    await writeAll(fh, new TextEncoder().encode(text), 0);
  });
}

/** `report.html` → also `report.md` and `report.json` beside it. Returns the three paths. */
export async function writeReport(report: ConformanceReport, htmlPath: string): Promise<{ html: string; markdown: string; json: string }> {
  mkdirSync(dirname(htmlPath), { recursive: true });
  const stem = join(dirname(htmlPath), basename(htmlPath, extname(htmlPath)));
  const paths = { html: htmlPath, markdown: `${stem}.md`, json: `${stem}.json` };
  await writeText(paths.html, renderHtml(report));
  await writeText(paths.markdown, renderMarkdown(report));
  await writeText(paths.json, `${JSON.stringify(report, null, 2)}\n`);
  return paths;
}
