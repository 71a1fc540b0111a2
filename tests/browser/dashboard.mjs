// Drives Flotilla's dashboard in Debian's Chromium: what a person sees and does, checked.
// Usage: node dashboard.mjs <base-url> <group> <admin-token> <out-dir>
// Exit 0 and a JSON summary on stdout when every check held; 1 with the failed check otherwise.
import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";

const [base, group, admin, out] = process.argv.slice(2);
if (!out) {
  console.error("usage: node dashboard.mjs <base-url> <group> <admin-token> <out-dir>");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const problems = []; // console errors, page errors, failed requests: any is a failure
const summary = { checks: [] };
const check = (name) => summary.checks.push(name);

async function api(method, path, body, token = admin) {
  const res = await fetch(base + "/api/v1" + path, {
    method,
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

function watch(page, label) {
  // Chromium logs every 4xx as a console error; those are judged below by URL instead.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`${label} console: ${m.text()}`);
  });
  page.on("response", (r) => {
    // The one refusal the script provokes: a control used without the admin token.
    const refused = [401, 403].includes(r.status()) && r.request().method() !== "GET";
    if (r.status() >= 400 && !refused) problems.push(`${label} ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  page.on("pageerror", (e) => problems.push(`${label} page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    // A stream cut by navigation or close is not a failure.
    if (!r.url().endsWith("/stream")) problems.push(`${label} request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
}

// The flags keep Chromium off the network it would otherwise reach for at start (a closed network
// refuses those connections and they show as noise), and root needs --no-sandbox.
const browser = await chromium.launch({
  executablePath,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
  ],
});
let failed = null;
try {
  // A laptop screen, no token: the group is shown live (the daemon allows anonymous reads on loopback).
  const laptop = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await laptop.newPage();
  watch(page, "laptop");
  const started = Date.now();
  await page.goto(base + "/");
  const section = page.locator(`section.group[data-group="${group}"]`);
  await section.waitFor({ timeout: 10_000 });
  summary.first_paint_ms = Date.now() - started;
  await page.locator("#conn[data-state=live]").waitFor({ timeout: 5_000 });
  await section.locator("tbody tr[data-member]").first().waitFor({ timeout: 15_000 });
  await section.locator(".chart svg path.value").waitFor({ state: "attached" });
  // The last decision opens onto what it saw, member by member, with the age of each reading.
  await section.locator(".decision summary").click();
  await section.locator('.decision .inputs tr[data-input] td', { hasText: "cpu" }).first().waitFor({ timeout: 5_000 });
  check("group shown live without a token, its last decision explained");

  // A scale-out made elsewhere (through the API) shows in the chart and the timeline within 3 s.
  const before = await section.locator("tbody tr[data-member]").count();
  const asked = Date.now();
  const r = await api("PUT", `/groups/${group}/desired`, { desired: before + 1 });
  if (r.status !== 202) throw new Error(`PUT desired answered ${r.status}: ${JSON.stringify(r.json)}`);
  await section.locator(".chart line.mark-scale-out").first().waitFor({ state: "attached", timeout: 3_000 });
  await section.locator(".events .k-scale-out").first().waitFor({ timeout: 3_000 });
  summary.scale_out_shown_ms = Date.now() - asked;
  // (No waitForFunction: it evaluates a string, which the dashboard's CSP rightly forbids.)
  await section.locator("tbody tr[data-member]").nth(before).waitFor({ timeout: 15_000 });
  check("scale-out in chart, timeline and member table");

  // A shorter window: the axis follows, the history is fetched again and still drawn.
  await page.selectOption("#window", "2m");
  await section.locator(".chart svg text", { hasText: "-2m" }).waitFor({ timeout: 3_000 });
  await section.locator(".chart svg path.value").waitFor({ state: "attached" });

  // Pause without a token is refused, and says why; nothing changes.
  const pause = section.locator('button[data-act="pause"]');
  await pause.click();
  await page.locator("#toast.bad", { hasText: "admin token" }).waitFor({ timeout: 3_000 });
  const still = await api("GET", `/groups/${group}`);
  if (still.json.paused) throw new Error("a pause without a token paused the group");
  check("pause without a token refused");

  // With the admin token, pause works and the badge appears; resume undoes it.
  await page.fill("#token", admin);
  await page.click('#token-form button[type="submit"]');
  await page.locator("#conn[data-state=live]").waitFor({ timeout: 5_000 });
  await pause.click();
  await section.locator("h2 .badge.paused").waitFor({ timeout: 3_000 });
  if (!(await api("GET", `/groups/${group}`)).json.paused) throw new Error("the group is not paused in the API");
  await page.screenshot({ path: `${out}/dashboard-laptop.png`, fullPage: true });
  await section.locator('button[data-act="pause"]', { hasText: "Resume" }).click();
  await section.locator("h2 .badge.paused").waitFor({ state: "detached", timeout: 3_000 });
  check("pause and resume with the admin token");

  // A phone: everything readable without sideways scrolling of the page.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  watch(small, "phone");
  await small.goto(base + "/dashboard/");
  await small.locator(`section.group[data-group="${group}"] tbody tr[data-member]`).first().waitFor({ timeout: 10_000 });
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`the page is ${overflow}px wider than a phone's screen`);
  // Nor does the member table hide its buttons behind a sideways scroll.
  const hidden = await small.evaluate(() =>
    Math.max(0, ...[...document.querySelectorAll(".table-wrap")].map((w) => w.scrollWidth - w.clientWidth)));
  if (hidden > 1) throw new Error(`the member table is ${hidden}px wider than a phone's screen`);
  await small.screenshot({ path: `${out}/dashboard-phone.png`, fullPage: true });
  check("phone layout fits");

  if (problems.length) throw new Error(problems.join("\n"));
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
writeFileSync(`${out}/summary.json`, JSON.stringify({ ...summary, problems, failed: failed?.message ?? null }, null, 2));
if (failed) {
  console.error(`dashboard check failed: ${failed.message}\nproblems: ${problems.join("\n") || "none"}`);
  process.exit(1);
}
console.log(JSON.stringify(summary));
