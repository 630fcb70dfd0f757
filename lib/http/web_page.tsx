/** @jsxImportSource hono/jsx */
/**
 * @module The web dashboard at `/`: one server-rendered page (hono/jsx) plus a script and a
 * stylesheet served by upbot itself, so it works offline with no build step and no CDN. The
 * script reads the dashboard JSON every 5 s and draws the charts as inline SVG; every value from
 * the server is written as text, never as HTML.
 */
import { Hono } from "hono";
import { DASHBOARD_SCRIPT, DASHBOARD_STYLE } from "./web_assets.ts";

/** Only our own origin; no inline script, no frames. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
  "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

function Section(props: { id: string; title: string; children?: unknown }) {
  return (
    <section id={props.id}>
      <h2>{props.title}</h2>
      {props.children}
    </section>
  );
}

function Page(props: { markets: readonly string[] }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>upbot</title>
        <link rel="stylesheet" href="/dashboard.css" />
      </head>
      <body data-markets={props.markets.join(",")}>
        <header>
          <h1>upbot</h1>
          <span id="mode" class="badge">mode …</span>
          <span id="trading-badge" class="badge">trading …</span>
          <span id="refreshed" class="muted">loading…</span>
          <span id="error" class="error" role="alert"></span>
        </header>
        <main>
          <Section id="guard" title="Mode and live guard">
            <table id="guard-table">
              <thead>
                <tr>
                  <th>Condition</th>
                  <th>OK</th>
                  <th>Value</th>
                </tr>
              </thead>
              <tbody></tbody>
            </table>
          </Section>
          <Section id="trading" title="Trading state">
            <table id="trading-table">
              <thead>
                <tr>
                  <th>Scope</th>
                  <th>State</th>
                  <th>By</th>
                  <th>Reason</th>
                  <th>Since</th>
                </tr>
              </thead>
              <tbody></tbody>
            </table>
            <form id="control" autocomplete="off">
              <label>
                Scope{" "}
                <select id="control-scope">
                  <option value="">global</option>
                  {props.markets.map((m) => <option key={m} value={m}>{m}</option>)}
                </select>
              </label>
              <label>
                Reason <input id="control-reason" type="text" maxlength={500} />
              </label>
              <label>
                API token <input id="control-token" type="password" />
              </label>
              <button type="button" id="halt">Halt entries</button>
              <button type="button" id="resume">Resume entries</button>
              <span id="control-result" role="status"></span>
            </form>
            <h3>Alarms</h3>
            <ul id="alarms"></ul>
          </Section>
          <Section id="account" title="Balances and positions">
            <table id="balances-table">
              <thead>
                <tr>
                  <th>Currency</th>
                  <th>Balance</th>
                  <th>Locked</th>
                  <th>Avg buy price</th>
                </tr>
              </thead>
              <tbody></tbody>
            </table>
            <table id="positions-table">
              <thead>
                <tr>
                  <th>Market</th>
                  <th>Qty</th>
                  <th>Avg price</th>
                  <th>Last close</th>
                  <th>Unrealised pnl</th>
                </tr>
              </thead>
              <tbody></tbody>
            </table>
          </Section>
          <Section id="charts" title="Prices (last 10 minutes) with paper entries and exits">
            <div id="price-charts">
              {props.markets.map((m) => (
                <figure key={m} class="chart" data-market={m}>
                  <figcaption>{m}</figcaption>
                </figure>
              ))}
            </div>
            <figure class="chart" id="pnl-chart">
              <figcaption>Cumulative paper pnl (KRW, last hour)</figcaption>
            </figure>
          </Section>
          <Section id="attempts" title="Latest order attempts">
            <table id="attempts-table">
              <thead>
                <tr>
                  <th>Time</th>
                  <th>Market</th>
                  <th>Action</th>
                  <th>Mode</th>
                  <th>Status</th>
                  <th>Identifier</th>
                  <th>HTTP</th>
                  <th>Latency ms</th>
                </tr>
              </thead>
              <tbody></tbody>
            </table>
          </Section>
          <Section id="snapshots" title="Latest order snapshots">
            <table id="snapshots-table">
              <thead>
                <tr>
                  <th>Time</th>
                  <th>Market</th>
                  <th>UUID</th>
                  <th>State</th>
                  <th>Side</th>
                  <th>Executed</th>
                  <th>Fee</th>
                </tr>
              </thead>
              <tbody></tbody>
            </table>
          </Section>
          <Section id="actors" title="Actors">
            <table id="actors-table">
              <thead>
                <tr>
                  <th>Actor</th>
                  <th>State</th>
                  <th>Restarts</th>
                  <th>Heartbeat age ms</th>
                  <th>Last error</th>
                </tr>
              </thead>
              <tbody></tbody>
            </table>
          </Section>
        </main>
        <script src="/dashboard.js" defer></script>
      </body>
    </html>
  );
}

/** `GET /` (the page), `/dashboard.js` and `/dashboard.css`. */
export function webRoutes(deps: { markets: readonly string[] }): Hono {
  const routes = new Hono();
  routes.get("/", (c) => {
    c.header("Content-Security-Policy", CSP);
    c.header("X-Content-Type-Options", "nosniff");
    c.header("Referrer-Policy", "no-referrer");
    return c.html("<!doctype html>" + String(<Page markets={deps.markets} />));
  });
  routes.get("/dashboard.js", (c) => {
    c.header("X-Content-Type-Options", "nosniff");
    return c.body(DASHBOARD_SCRIPT, 200, { "Content-Type": "text/javascript; charset=utf-8" });
  });
  // Browsers ask for it on their own; there is none.
  routes.get("/favicon.ico", (c) => c.body(null, 204));
  routes.get("/dashboard.css", (c) => {
    c.header("X-Content-Type-Options", "nosniff");
    return c.body(DASHBOARD_STYLE, 200, { "Content-Type": "text/css; charset=utf-8" });
  });
  return routes;
}
