/**
 * @module The web dashboard (`/`) in headless Chromium (Debian `chromium`, driven by
 * playwright-core) against a running upbot on the simulator: what it shows, its halt and resume
 * controls, that it loads nothing from another origin and logs no error. Saves a screenshot to
 * `test-artifacts/dashboard.png`. And `/api/attempts` with a time range reads the rows of its
 * range through the `ts` index, not every newer row.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { chromium } from "playwright-core";
import { tradingStates } from "../lib/control/trading_state.ts";
import {
  ATTEMPT_FIELDS,
  attemptsQuery,
  type DashboardDeps,
  dashboardRoutes,
} from "../lib/http/dashboard_routes.ts";
import { dbTest } from "./_db.ts";
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
    // One exit is enough for a visible line: the cumulative pnl holds its value until now.
    for (
      const [selector, around] of [
        ["#price-charts circle.mark.exit", "#price-charts"],
        ["#pnl-chart svg polyline", "#pnl-chart"],
      ] as const
    ) {
      await page.waitForSelector(selector).catch(async (err) => {
        throw new Error(`${err.message}\n${around}: ${await page.innerHTML(around)}`);
      });
    }
    const pnlPoints = await page.getAttribute("#pnl-chart svg polyline", "points");
    assert.ok(pnlPoints && pnlPoints.split(" ").length >= 2, `pnl chart: ${pnlPoints}`);

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

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Actual Rows"?: number;
  "Actual Loops"?: number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Index Recheck"?: number;
  Plans?: PlanNode[];
}

/** Rows the plan's scans of `upbit_order_attempts` read (kept or filtered out). */
function attemptRowsRead(node: PlanNode): number {
  const own = node["Relation Name"] === "upbit_order_attempts"
    ? (node["Actual Rows"] ?? 0) * (node["Actual Loops"] ?? 1) +
      (node["Rows Removed by Filter"] ?? 0) + (node["Rows Removed by Index Recheck"] ?? 0)
    : 0;
  return own + (node.Plans ?? []).reduce((sum, n) => sum + attemptRowsRead(n), 0);
}

dbTest(
  "/api/attempts with a time range reads its range's rows, newest first by time",
  async (db) => {
    const { sql } = db;
    const T0 = Date.parse("2026-05-01T00:00:00Z");
    const N = 20_000;
    // One attempt a second; then three written late (higher ids) with times early in the range.
    await sql`
    insert into upbit_order_attempts (ts, symbol, action, mode, side, ord_type, status, identifier)
    select to_timestamp(${T0 / 1000}::float8 + i), 'KRW-BTC', 'ENTER_LONG', 'shadow', 'bid',
           'price', 'logged', 't-' || i
    from generate_series(1, ${N}) i`;
    await sql`
    insert into upbit_order_attempts (ts, symbol, action, mode, side, ord_type, status, identifier)
    select to_timestamp(${T0 / 1000}::float8 + i + 0.5), 'KRW-ETH', 'ENTER_LONG', 'shadow', 'bid',
           'price', 'logged', 'late-' || i
    from generate_series(97, 99) i`;
    // Statistics as a running database has them (the planner then walks the primary key newest
    // first for "order by id", through every row newer than the range).
    await sql`analyze upbit_order_attempts`;
    const app = new Hono();
    app.route(
      "/",
      dashboardRoutes({
        sql,
        guard: {} as DashboardDeps["guard"],
        markets: ["KRW-BTC"],
        actors: () => [],
        supervisorHalt: () => null,
        startedAt: 0,
      }),
    );
    const get = async (query: string) => {
      const res = await app.request(`/api/attempts?${query}`);
      assert.equal(res.status, 200, query);
      return (await res.json()) as { id: number; identifier: string; ts: number }[];
    };
    const select = ATTEMPT_FIELDS.map((f) => `${f.expr} as ${f.field}`).join(", ");
    const rowsRead = async (q: Parameters<typeof attemptsQuery>[1]) => {
      const { text, params } = attemptsQuery(select, q);
      const [row] = await sql.unsafe(`explain (analyze, format json) ${text}`, params as never[]);
      const plan = row!["QUERY PLAN"];
      return attemptRowsRead((typeof plan === "string" ? JSON.parse(plan) : plan)[0].Plan);
    };

    // The first 100 seconds, far back: newest first by time (the late rows in their place).
    const to = T0 + 100_000;
    const page1 = await get(`from=0&to=${to}&limit=5`);
    assert.deepEqual(page1.map((a) => a.identifier), [
      "t-100",
      "late-99",
      "t-99",
      "late-98",
      "t-98",
    ]);
    const page2 = await get(`from=0&to=${to}&limit=5&before=${page1.at(-1)!.id}`);
    assert.deepEqual(page2.map((a) => a.identifier), ["late-97", "t-97", "t-96", "t-95", "t-94"]);
    const tsOrder = [...page1, ...page2].map((a) => a.ts);
    assert.deepEqual(tsOrder, [...tsOrder].sort((a, b) => b - a));
    // Nothing in the range: nothing read either.
    assert.deepEqual(await get(`from=0&to=1`), []);
    assert.equal(await rowsRead({ from: 0, to: 1, limit: 50 }), 0);
    // A page reads at most its range's rows (103 in the first 100 s, when the planner finds that
    // cheapest), never the 19 900 newer ones; over the whole table, about the page's own rows.
    for (
      const [q, most] of [
        [{ from: 0, to, limit: 5 }, 103],
        [{ from: 0, to, limit: 5, before: page1.at(-1)!.id }, 103 + 2],
        [{ to, limit: 5, market: "KRW-BTC" }, 103],
        [{ from: 0, to: T0 + N * 1000, limit: 5 }, 20],
        [{ from: T0 + 5000_000, limit: 5 }, 20],
        // No range: the newest rows by id.
        [{ limit: 5 }, 20],
        [{ limit: 5, before: N - 1000 }, 20],
      ] as const
    ) {
      const read = await rowsRead(q);

      assert.ok(read <= most, `${JSON.stringify(q)}: ${read} rows read`);
    }
    // Without a range: newest first by id, paging by id, as before.
    const latest = await get(`limit=3`);
    assert.deepEqual(latest.map((a) => a.identifier), ["late-99", "late-98", "late-97"]);
    const older = await get(`limit=2&before=${latest.at(-1)!.id}`);
    assert.deepEqual(older.map((a) => a.identifier), [`t-${N}`, `t-${N - 1}`]);
  },
);
