/**
 * @module The web dashboard's script and stylesheet, served by upbot (no build step, no CDN).
 * The script is plain browser JavaScript kept as text here; it never uses innerHTML, so nothing
 * from the server is ever parsed as HTML.
 */

/** `GET /dashboard.js`. */
export const DASHBOARD_SCRIPT = String.raw`(function () {
  "use strict";
  var TOKEN_KEY = "upbot.apiToken";
  var REFRESH_MS = 5000;
  var SVG = "http://www.w3.org/2000/svg";
  var markets = (document.body.getAttribute("data-markets") || "").split(",").filter(Boolean);

  function $(id) { return document.getElementById(id); }
  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  function authHeaders(extra) {
    var h = extra || {};
    if (token()) h["Authorization"] = "Bearer " + token();
    return h;
  }
  function getJson(path) {
    return fetch(path, { headers: authHeaders() }).then(function (r) {
      if (!r.ok) throw new Error(path + " answered " + r.status);
      return r.json();
    });
  }
  function postJson(path, body) {
    return fetch(path, {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    }).then(function (r) {
      return r.json().then(function (j) { return { status: r.status, body: j }; });
    });
  }
  function time(ms) { return ms == null ? "" : new Date(ms).toLocaleTimeString(); }
  function dateTime(ms) { return ms == null ? "" : new Date(ms).toLocaleString(); }
  function num(v, digits) {
    if (v == null) return "";
    return Number(v).toLocaleString(undefined, { maximumFractionDigits: digits == null ? 8 : digits });
  }
  function text(v) { return v == null ? "" : String(v); }

  /** Replaces the rows of table id with one row per item; columns are functions of an item. */
  function fillTable(id, items, columns, rowClass) {
    var body = $(id).querySelector("tbody");
    var rows = items.map(function (item) {
      var tr = document.createElement("tr");
      if (rowClass) tr.className = rowClass(item) || "";
      columns.forEach(function (col) {
        var td = document.createElement("td");
        td.textContent = col(item);
        tr.appendChild(td);
      });
      return tr;
    });
    body.replaceChildren.apply(body, rows);
  }

  function svgEl(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }

  /** Draws a line chart of points [[t, v], ...] with optional marks [{t, v, kind, title}]. */
  function drawChart(figure, points, marks) {
    var old = figure.querySelector("svg, .empty");
    if (old) old.remove();
    if (points.length === 0) {
      var p = document.createElement("p");
      p.className = "empty muted";
      p.textContent = "no data yet";
      figure.appendChild(p);
      return;
    }
    var W = 640, H = 180, PAD = 36;
    var ts = points.map(function (p) { return p[0]; });
    var vs = points.map(function (p) { return p[1]; }).concat(marks.map(function (m) { return m.v; }));
    var t0 = Math.min.apply(null, ts), t1 = Math.max.apply(null, ts);
    var v0 = Math.min.apply(null, vs), v1 = Math.max.apply(null, vs);
    if (t1 === t0) t1 = t0 + 1;
    if (v1 === v0) { v1 = v0 + 1; v0 = v0 - 1; }
    function x(t) { return PAD + (W - 2 * PAD) * (t - t0) / (t1 - t0); }
    function y(v) { return H - PAD / 2 - (H - PAD) * (v - v0) / (v1 - v0); }
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "class": "plot" });
    svg.appendChild(svgEl("polyline", {
      points: points.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); }).join(" "),
      "class": "line",
    }));
    [[v1, y(v1)], [v0, y(v0)]].forEach(function (l) {
      var label = svgEl("text", { x: 2, y: l[1] + 4, "class": "axis" });
      label.textContent = num(l[0], 2);
      svg.appendChild(label);
    });
    marks.forEach(function (m) {
      if (m.t < t0 || m.t > t1) return;
      var c = svgEl("circle", { cx: x(m.t), cy: y(m.v), r: 4, "class": "mark " + m.kind });
      var title = svgEl("title", {});
      title.textContent = m.title;
      c.appendChild(title);
      svg.appendChild(c);
    });
    figure.appendChild(svg);
  }

  function renderStatus(s) {
    $("mode").textContent = "mode " + s.mode.effective +
      (s.mode.requested !== s.mode.effective ? " (asked " + s.mode.requested + ")" : "");
    var halted = s.trading.filter(function (t) { return t.state === "halted"; });
    var badge = $("trading-badge");
    badge.textContent = halted.length === 0 && !s.supervisor_halt
      ? "trading active"
      : "entries halted: " + halted.map(function (t) { return t.scope; }).join(", ") +
        (s.supervisor_halt ? " (supervisor)" : "");
    badge.className = "badge " + (halted.length === 0 && !s.supervisor_halt ? "ok" : "bad");
    fillTable("guard-table", s.guard, [
      function (g) { return g.name; },
      function (g) { return g.ok ? "yes" : "no"; },
      function (g) { return g.value; },
    ]);
    fillTable("trading-table", s.trading, [
      function (t) { return t.scope; },
      function (t) { return t.state; },
      function (t) { return text(t.by); },
      function (t) { return text(t.reason); },
      function (t) { return dateTime(t.since); },
    ], function (t) { return t.state === "halted" ? "bad" : ""; });
    var alarms = $("alarms");
    var items = s.alarms.map(function (a) {
      var li = document.createElement("li");
      li.className = "bad";
      li.textContent = a.code + (a.market ? " " + a.market : "") + ": " + a.message +
        " (x" + a.count + ", since " + dateTime(a.first_ts) + ")";
      return li;
    });
    if (items.length === 0) {
      var none = document.createElement("li");
      none.className = "muted";
      none.textContent = "none";
      items.push(none);
    }
    alarms.replaceChildren.apply(alarms, items);
    fillTable("actors-table", s.actors, [
      function (a) { return a.name; },
      function (a) { return a.state; },
      function (a) { return String(a.restarts); },
      function (a) { return text(a.heartbeat_age_ms); },
      function (a) { return text(a.last_error); },
    ], function (a) { return a.state === "running" ? "" : (a.state === "stopped" ? "muted" : "bad"); });
  }

  function renderAccount(acc) {
    fillTable("balances-table", acc.balances, [
      function (b) { return b.currency; },
      function (b) { return num(b.balance); },
      function (b) { return num(b.locked); },
      function (b) { return num(b.avg_buy_price); },
    ]);
    fillTable("positions-table", acc.positions, [
      function (p) { return p.market; },
      function (p) { return num(p.qty); },
      function (p) { return num(p.avg_price); },
      function (p) { return num(p.last_close); },
      function (p) { return num(p.unrealised_pnl, 0); },
    ]);
  }

  function renderCharts(barsByMarket, paper, pnl, now) {
    markets.forEach(function (m, i) {
      var fig = document.querySelector('figure[data-market="' + m + '"]');
      if (!fig) return;
      var marks = [];
      paper.filter(function (p) { return p.market === m; }).forEach(function (p) {
        if (p.action === "ENTER_LONG") {
          marks.push({ t: p.entry_ts, v: p.entry_price, kind: "entry", title: "entry " + num(p.entry_price) });
        } else {
          marks.push({
            t: p.exit_ts, v: p.exit_price, kind: "exit",
            title: "exit " + num(p.exit_price) + " pnl " + num(p.pnl, 2) + " (" + text(p.exit_reason) + ")",
          });
        }
      });
      drawChart(fig, barsByMarket[i].map(function (b) { return [b.ts, b.close]; }), marks);
    });
    var series = pnl.length > 0 ? pnl[0].datapoints.map(function (d) { return [d[1], d[0]]; }) : [];
    // A cumulative sum holds its last value until now; this also makes one exit a visible line.
    if (series.length > 0 && series[series.length - 1][0] < now) {
      series.push([now, series[series.length - 1][1]]);
    }
    drawChart($("pnl-chart"), series, []);
  }

  function renderLists(attempts, snapshots) {
    fillTable("attempts-table", attempts, [
      function (a) { return time(a.ts); },
      function (a) { return a.market; },
      function (a) { return a.action; },
      function (a) { return a.mode; },
      function (a) { return a.status + (a.final_state ? "/" + a.final_state : ""); },
      function (a) { return a.identifier; },
      function (a) { return text(a.http_status); },
      function (a) { return text(a.latency_ms); },
    ], function (a) { return a.status === "error" || a.status === "unknown" ? "bad" : ""; });
    fillTable("snapshots-table", snapshots, [
      function (s) { return time(s.ts); },
      function (s) { return s.market; },
      function (s) { return s.uuid; },
      function (s) { return text(s.state); },
      function (s) { return text(s.side); },
      function (s) { return num(s.executed_volume); },
      function (s) { return num(s.paid_fee); },
    ]);
  }

  var busy = false;
  function refresh() {
    if (busy) return;
    busy = true;
    var now = Date.now();
    var bars = markets.map(function (m) {
      return getJson("/api/bars?market=" + encodeURIComponent(m) + "&from=" + (now - 600000) + "&to=" + now + "&limit=600");
    });
    var pnl = postJson("/grafana/query", {
      range: { from: new Date(now - 3600000).toISOString(), to: new Date(now).toISOString() },
      maxDataPoints: 300,
      targets: [{ target: "paper_pnl", refId: "A" }],
    }).then(function (r) {
      if (r.status !== 200) throw new Error("/grafana/query answered " + r.status);
      return r.body;
    });
    Promise.all([
      getJson("/api/status"),
      getJson("/api/account"),
      getJson("/api/attempts?limit=20"),
      getJson("/api/snapshots?limit=20"),
      getJson("/api/paper-trades?limit=200&from=" + (now - 600000)),
      pnl,
      Promise.all(bars),
    ]).then(function (r) {
      renderStatus(r[0]);
      renderAccount(r[1]);
      renderLists(r[2], r[3]);
      renderCharts(r[6], r[4], r[5], now);
      $("refreshed").textContent = "updated " + time(Date.now());
      $("error").textContent = "";
    }).catch(function (err) {
      $("error").textContent = String(err && err.message || err);
    }).then(function () { busy = false; });
  }

  function control(action) {
    var tokenInput = $("control-token");
    if (tokenInput.value) sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
    var scope = $("control-scope").value;
    var body = {};
    if (scope) body.market = scope;
    if (action === "halt") body.reason = $("control-reason").value;
    postJson("/api/control/" + action, body).then(function (r) {
      $("control-result").textContent = r.status === 200
        ? action + " done"
        : action + " refused (" + r.status + "): " + text(r.body.error) +
          (r.body.field ? " [" + r.body.field + "]" : "");
      refresh();
    }).catch(function (err) { $("control-result").textContent = String(err); });
  }

  $("halt").addEventListener("click", function () { control("halt"); });
  $("resume").addEventListener("click", function () { control("resume"); });
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
`;

/** `GET /dashboard.css`. */
export const DASHBOARD_STYLE = `
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --muted: #6e7781; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; }
header { display: flex; gap: 1em; align-items: center; padding: .5em 1em; border-bottom: 1px solid #8884; }
h1 { font-size: 1.3em; margin: 0; }
h2 { font-size: 1.1em; margin: 1em 0 .4em; }
main { padding: 0 1em 2em; display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 0 2em; }
table { border-collapse: collapse; width: 100%; margin-bottom: .6em; }
th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid #8883; font-variant-numeric: tabular-nums; }
.badge { padding: 2px 8px; border-radius: 10px; border: 1px solid #8886; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .muted { color: var(--muted); }
.error { color: var(--bad); }
.chart { margin: 0 0 1em; }
.plot { width: 100%; height: auto; border: 1px solid #8883; }
.plot .line { fill: none; stroke: #0969da; stroke-width: 1.5; }
.plot .axis { font-size: 10px; fill: var(--muted); }
.plot .mark.entry { fill: var(--ok); } .plot .mark.exit { fill: var(--bad); }
form label { margin-right: .6em; }
`;
