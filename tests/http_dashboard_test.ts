/**
 * @module The web dashboard (`/`) in headless Chromium (Debian `chromium`, driven by
 * playwright-core) against a running upbot on the simulator: what it shows, its halt and resume
 * controls, that it loads nothing from another origin and logs no error. Saves a screenshot to
 * `test-artifacts/dashboard.png`.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { tradingStates } from "../lib/control/trading_state.ts";
import { startUpbotRig, waitFor } from "./_upbot_rig.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = new URL("../test-artifacts/", import.meta.url).pathname;
const TOKEN = "dashboard-test-token-51b2";

/** Waits until the text of `selector` satisfies `ok`. */
async function textIs(
  page: { textContent(selector: string): Promise<string | null> },
  selector: string,
  ok: (text: string) => boolean,
): Promise<void> {
  await waitFor(
    `${selector} text`,
    async () => ok((await page.textContent(selector)) ?? ""),
    30_000,
  );
}

Deno.test("web dashboard in headless Chromium: shows state, charts, lists; halts and resumes", async () => {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error("chromium is missing: apt-get install -y chromium");
  }
  await using rig = await startUpbotRig("pglite", { API_TOKEN: TOKEN });
  await waitFor("paper exits and attempts", async () => {
    const [row] = await rig.upbot.sql`
      select (select count(*)::int from paper_trades where action = 'EXIT_LONG') as exits,
             (select count(*)::int from upbit_order_attempts) as attempts`;
    return row!.exits >= 1 && row!.attempts >= 1;
  }, 90_000);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--no-first-run",
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1800 } });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("request", (r) => requests.push(r.url()));

    const res = await page.goto(`${rig.url}/`);
    assert.equal(res?.status(), 200);
    assert.match(res?.headers()["content-security-policy"] ?? "", /script-src 'self'/);
    await textIs(page, "#refreshed", (t) => t.startsWith("updated"));

    assert.equal(await page.textContent("#mode"), "mode shadow");
    assert.equal(await page.textContent("#trading-badge"), "trading active");
    const actorRows = await page.locator("#actors-table tbody tr td:first-child")
      .allTextContents();
    assert.deepEqual(actorRows, ["feed", "evaluator", "executor", "order_poller", "account"]);
    const guard = await page.locator("#guard-table tbody tr").count();
    assert.equal(guard, 5);
    assert.ok((await page.$$("#attempts-table tbody tr")).length >= 1);
    for (const market of ["KRW-BTC", "KRW-ETH"]) {
      const points = await page.getAttribute(
        `figure[data-market="${market}"] svg polyline`,
        "points",
      );
      assert.ok(points && points.split(" ").length >= 2, `${market} chart`);
    }
    // Entry and exit marks on the price charts, and a cumulative pnl line.
    assert.ok((await page.$$("#price-charts circle.mark.entry")).length >= 1);
    await page.waitForSelector("#price-charts circle.mark.exit");
    await page.waitForSelector("#pnl-chart svg polyline");

    // Halt with the token typed into the page; the store the CLI uses shows it.
    await page.fill("#control-reason", "seen in the browser");
    await page.fill("#control-token", TOKEN);
    await page.click("#halt");
    await textIs(page, "#control-result", (t) => t === "halt done");
    await textIs(page, "#trading-badge", (t) => t === "entries halted: global");
    const stored = await tradingStates(rig.upbot.sql);
    assert.deepEqual(stored.map((s) => [s.scope, s.halted, s.reason, s.by]), [
      ["global", true, "seen in the browser", "http"],
    ]);
    await Deno.mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}dashboard.png`, fullPage: true });
    assert.ok((await Deno.stat(`${ARTIFACTS}dashboard.png`)).size > 10_000);

    await page.click("#resume");
    await textIs(page, "#trading-badge", (t) => t === "trading active");
    // A wrong token is refused and said so.
    await page.evaluate("sessionStorage.clear()");
    await page.fill("#control-token", "wrong");
    await page.click("#halt");
    await textIs(page, "#control-result", (t) => t.startsWith("halt refused (401)"));

    assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
    const foreign = requests.filter((u) => !u.startsWith(rig.url + "/"));
    assert.deepEqual(foreign, [], "everything comes from upbot itself");
  } finally {
    await browser.close();
  }
});
