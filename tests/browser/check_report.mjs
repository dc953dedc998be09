// Opens a norbvae HTML report in headless Chromium (Debian's, not a downloaded one) at each given
// viewport width, screenshots the whole page and prints one JSON line per width with what a reader
// would see: page overflow, undecoded images, charts with no size, console errors.
//
// usage: node check_report.mjs REPORT.html SCREENSHOT_DIR WIDTH [WIDTH...]
// env:   CHROMIUM=/path/to/chromium (default /usr/bin/chromium)
//
// The script judges nothing: the Rust test (tests/report_browser.rs) asserts on its output. It exits
// non-zero only when it cannot do the measuring (no browser, page failed to load).
import puppeteer from "puppeteer-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [report, shotDir, ...widthArgs] = process.argv.slice(2);
if (!report || !shotDir || widthArgs.length === 0) {
  console.error("usage: node check_report.mjs REPORT.html SCREENSHOT_DIR WIDTH [WIDTH...]");
  process.exit(2);
}
const widths = widthArgs.map((w) => {
  const n = Number(w);
  if (!Number.isInteger(n) || n < 200) {
    console.error(`bad width ${w}: expected an integer number of pixels >= 200`);
    process.exit(2);
  }
  return n;
});

// A fresh profile per run, so no state leaks between runs or from a user's browser.
const profile = mkdtempSync(join(tmpdir(), "norbvae-chromium-"));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  userDataDir: profile,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  for (const width of widths) {
    const page = await browser.newPage();
    const consoleErrors = [];
    page.on("console", (msg) => {
      if (msg.type() === "error") consoleErrors.push(msg.text());
    });
    page.on("pageerror", (err) => consoleErrors.push(`page error: ${err.message}`));
    page.on("requestfailed", (req) =>
      consoleErrors.push(`request failed: ${req.url().slice(0, 120)} (${req.failure()?.errorText})`),
    );
    await page.setViewport({ width, height: 900, deviceScaleFactor: 1 });
    await page.goto(pathToFileURL(resolve(report)).href, { waitUntil: "load", timeout: 60000 });
    const result = await page.evaluate(async () => {
      const imgs = [...document.images];
      // decode() rejects for an image that cannot be decoded; count those as not decoded.
      await Promise.all(imgs.map((i) => i.decode().catch(() => {})));
      const notDecoded = imgs
        .filter((i) => !(i.complete && i.naturalWidth > 0))
        .map((i) => i.alt || i.src.slice(0, 60));
      const charts = [...document.querySelectorAll("svg")];
      const emptyCharts = charts
        .filter((s) => {
          const r = s.getBoundingClientRect();
          return !(r.width > 0 && r.height > 0 && s.childElementCount > 0);
        })
        .map((s) => s.querySelector("text")?.textContent || s.outerHTML.slice(0, 60));
      const doc = document.scrollingElement;
      // Elements whose right edge is past the viewport although the page does not scroll: content a
      // reader cannot reach (hidden by an overflow: hidden ancestor or by the window edge).
      // Content inside a horizontally scrolling box is reachable and not counted.
      const scrollsX = (el) => {
        for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
          const o = getComputedStyle(a).overflowX;
          if (o === "auto" || o === "scroll") return true;
        }
        return false;
      };
      const cutOff = [...document.body.querySelectorAll("*")]
        .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5 && !scrollsX(el))
        .map((el) => el.tagName.toLowerCase() + (el.getAttribute("class") ? "." + el.getAttribute("class") : ""));
      // The runs table: how much of it is visible without scrolling its box.
      const table = document.querySelector("table.runs");
      const wrap = table?.parentElement;
      return {
        scrollWidth: doc.scrollWidth,
        innerWidth: window.innerWidth,
        pageHeight: doc.scrollHeight,
        images: imgs.length,
        notDecoded,
        charts: charts.length,
        emptyCharts,
        cutOff: [...new Set(cutOff)].slice(0, 20),
        tableWidth: table ? Math.round(table.getBoundingClientRect().width) : null,
        tableBoxWidth: wrap ? Math.round(wrap.clientWidth) : null,
        tableColumns: table ? table.querySelector("tbody tr")?.children.length ?? 0 : null,
        // The answers' tables, each wider than its box or not.
        answerTables: document.querySelectorAll("table.qa-table").length,
        answerTablesTooWide: [...document.querySelectorAll("table.qa-table")]
          .filter((t) => t.getBoundingClientRect().width > t.parentElement.clientWidth + 0.5)
          .map((t) => t.closest(".qa")?.querySelector("b")?.textContent),
      };
    });
    const screenshot = join(shotDir, `report-${width}px.png`);
    await page.screenshot({ path: screenshot, fullPage: true });
    // The first screen alone, legible at full size: title, notes, the runs table.
    await page.screenshot({ path: join(shotDir, `report-${width}px-top.png`) });
    console.log(JSON.stringify({ width, ...result, consoleErrors, screenshot }));
    await page.close();
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
