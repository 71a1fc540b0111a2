// Screenshot of a running dashboard for the README: node shot.mjs <url> <out.png> [width height]
import { chromium } from "playwright-core";
const [url, out, w = "1280", h = "860"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = await (await browser.newContext({ viewport: { width: +w, height: +h } })).newPage();
await page.goto(url);
await page.locator("section.group tbody tr[data-member]").first().waitFor({ timeout: 10_000 });
await page.waitForTimeout(500);
await page.screenshot({ path: out });
await browser.close();
