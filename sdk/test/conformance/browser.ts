/**
 * Looks at an HTML report the way a person would: headless Chromium renders it, takes a screenshot, and
 * measures what is visible (table and chart boxes, and chart pixels drawn through a canvas).
 */
import { existsSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env["LORAPORT_CHROMIUM"] ?? "/usr/bin/chromium";
export const hasChromium = existsSync(CHROMIUM);

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

export interface PageLook {
  /** loraport's table (#results); `referenceRows`: the reference self-consistency table's rows. */
  readonly table: { width: number; height: number; rows: number; visible: boolean; referenceRows: number };
  readonly charts: Array<{ width: number; height: number; inkPixels: number; bars: number }>;
  readonly summaryText: string;
  readonly externalRequests: string[];
}

/** Render `htmlFile`, save a full-page screenshot to `screenshot`, and report what is on screen. */
export async function lookAtReport(htmlFile: string, screenshot: string): Promise<PageLook> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const external: string[] = [];
    page.on("request", (req) => {
      if (!req.url().startsWith("file:") && !req.url().startsWith("data:")) external.push(req.url());
    });
    await page.goto(pathToFileURL(htmlFile).href, { waitUntil: "load" });
    await page.screenshot({ path: screenshot, fullPage: true });
    const look = await page.evaluate(async () => {
      const tableEl = document.querySelector("#results") as HTMLTableElement | null;
      const tb = tableEl?.getBoundingClientRect();
      // Visible = the element at the table's first cell is the table's own content (nothing covers it).
      const cell = tableEl?.querySelector("td");
      const cb = cell?.getBoundingClientRect();
      const hit = cb ? document.elementFromPoint(cb.left + 2, cb.top + 2) : null;
      const charts = [];
      for (const svg of Array.from(document.querySelectorAll("svg.chart"))) {
        const b = svg.getBoundingClientRect();
        // Draw the SVG as the browser renders it onto a canvas and count non-white pixels.
        const img = new Image();
        img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(new XMLSerializer().serializeToString(svg))}`;
        await img.decode();
        const canvas = document.createElement("canvas");
        canvas.width = Math.ceil(b.width);
        canvas.height = Math.ceil(b.height);
        const ctx = canvas.getContext("2d")!;
        ctx.fillStyle = "#fff";
        ctx.fillRect(0, 0, canvas.width, canvas.height);
        ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
        const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        let ink = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i]! < 200 || data[i + 1]! < 200 || data[i + 2]! < 200) ink++;
        charts.push({ width: b.width, height: b.height, inkPixels: ink, bars: svg.querySelectorAll("rect.bar").length });
      }
      return {
        table: { width: tb?.width ?? 0, height: tb?.height ?? 0, rows: tableEl?.tBodies[0]?.rows.length ?? 0, visible: !!hit && !!tableEl?.contains(hit),
          referenceRows: (document.querySelector("#reference-results") as HTMLTableElement | null)?.tBodies[0]?.rows.length ?? 0 },
        charts,
        summaryText: document.querySelector("#summary")?.textContent ?? "",
      };
    });
    return { ...look, externalRequests: external };
  } finally {
    await browser.close();
  }
}
