/**
 * @module `GET /metrics` on a running upbot on the simulator, checked by `promtool check metrics`
 * (Debian package `prometheus`), and the shipped scrape config and alert rules checked (and unit
 * tested) by promtool.
 */
import assert from "node:assert/strict";
import { DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY } from "../sim/mod.ts";
import { testBackends } from "./_db.ts";
import { startUpbotRig, waitFor } from "./_upbot_rig.ts";

const PROMETHEUS_DIR = new URL("../prometheus/", import.meta.url).pathname;
const TOKEN = "metrics-test-token-93a1";

async function promtool(args: string[], stdin?: string) {
  let child;
  try {
    child = new Deno.Command("promtool", {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error("promtool is missing: apt-get install -y prometheus");
    }
    throw err;
  }
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

/** The value of the sample `name{labels}` exactly as written, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The sum of every sample whose line matches `series` (its labels differing). */
function sumSamples(text: string, series: RegExp): number {
  return text.split("\n").filter((l) => series.test(l))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

Deno.test("prometheus/: alert rules and scrape config pass promtool", async () => {
  const rules = await promtool(["check", "rules", `${PROMETHEUS_DIR}alerts.yml`]);
  assert.equal(rules.code, 0, rules.text);
  const unit = await promtool(["test", "rules", `${PROMETHEUS_DIR}alerts_test.yml`]);
  assert.equal(unit.code, 0, unit.text);
  // The config reads the token from a file; check it against a temporary one.
  const dir = await Deno.makeTempDir({ prefix: "upbot_prom_" });
  try {
    await Deno.writeTextFile(`${dir}/upbot_read_token`, "t");
    await Deno.copyFile(`${PROMETHEUS_DIR}alerts.yml`, `${dir}/alerts.yml`);
    const config = (await Deno.readTextFile(`${PROMETHEUS_DIR}prometheus.yml`))
      .replaceAll("/etc/prometheus/upbot_read_token", `${dir}/upbot_read_token`);
    assert.ok(config.includes(`${dir}/upbot_read_token`));
    await Deno.writeTextFile(`${dir}/prometheus.yml`, config);
    const checked = await promtool(["check", "config", `${dir}/prometheus.yml`]);
    assert.equal(checked.code, 0, checked.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const backend of testBackends()) {
  Deno.test(`GET /metrics passes promtool check metrics on a real scrape [${backend}]`, async () => {
    await using rig = await startUpbotRig(backend, {
      API_TOKEN: TOKEN,
      UPBIT_ACCESS_KEY: DEFAULT_ACCESS_KEY,
      UPBIT_SECRET_KEY: DEFAULT_SECRET_KEY,
      UPBIT_TRADE_MODE: "test",
      MAX_ORDERS_PER_MIN: "600",
    });
    // Test-mode orders give latencies and Upbit answers to count.
    await waitFor("test orders answered", async () => {
      const [row] = await rig.upbot.sql`
        select count(*)::int as n from upbit_order_attempts where latency_ms is not null`;
      return row!.n >= 2;
    });
    await waitFor("/readyz 200", async () => {
      const r = await fetch(`${rig.url}/readyz`);
      await r.body?.cancel();
      return r.status === 200;
    });
    const halt = await fetch(`${rig.url}/api/control/halt`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ reason: "metrics test" }),
    });
    assert.equal(halt.status, 200);
    await halt.body?.cancel();

    const res = await fetch(`${rig.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const checked = await promtool(["check", "metrics"], text);
    assert.equal(checked.code, 0, checked.text);
    assert.equal(checked.text.trim(), "", `promtool lint: ${checked.text}`);
    assert.ok(!text.includes(TOKEN));

    assert.equal(sample(text, 'upbot_actor_up{actor="feed"}'), 1);
    assert.equal(sample(text, 'upbot_actor_restarts_total{actor="executor"}'), 0);
    // Each actor's own isolate heap, from its heartbeats.
    assert.ok(sample(text, 'upbot_actor_heap_used_bytes{actor="executor"}')! > 0);
    assert.ok(
      sample(text, 'upbot_actor_heap_total_bytes{actor="feed"}')! >=
        sample(text, 'upbot_actor_heap_used_bytes{actor="feed"}')!,
    );
    assert.ok(sample(text, "upbot_feed_trades_received_total")! > 0);
    assert.ok(sample(text, "upbot_feed_bars_finalised_total")! > 0);
    assert.equal(sample(text, "upbot_ready"), 1);
    assert.equal(sample(text, "upbot_feed_connected"), 1);
    assert.equal(sample(text, 'upbot_trading_halted{scope="global"}'), 1);
    assert.equal(sample(text, 'upbot_alarms_active{code="all"}'), 0);
    assert.ok(sample(text, 'upbot_paper_trades_total{action="ENTER_LONG"}')! >= 1);
    const count = sample(text, 'upbot_order_latency_seconds_count{mode="test"}')!;
    assert.ok(count >= 2);
    assert.equal(sample(text, 'upbot_order_latency_seconds_bucket{mode="test",le="+Inf"}'), count);
    const buckets = text.split("\n").filter((l) =>
      l.startsWith('upbot_order_latency_seconds_bucket{mode="test"')
    ).map((l) => Number(l.split(" ")[1]));
    assert.deepEqual(buckets, [...buckets].sort((a, b) => a - b), "cumulative buckets");
    assert.ok(sample(text, "upbot_db_ping_seconds")! >= 0);
    assert.match(text, /^upbot_upbit_order_responses_total\{group="[^"]+",code="201"\} \d+/m);

    // Every actor's own Upbit client is counted, not only the executor's recorded orders (the
    // actors' counters reach the supervisor with their heartbeats, hence the wait).
    const scrapeText = async () => await (await fetch(`${rig.url}/metrics`)).text();
    const restText = await waitFor("every actor's REST calls in /metrics", async () => {
      const t = await scrapeText();
      const account = 'upbot_upbit_rest_calls_total{actor="account",group="default",status="200"}';
      // Every answer counts, whatever its status: a test-mode exit can be refused (400) when
      // the simulator's account does not hold the coin, and the first two answers may be both.
      const executor = sumSamples(
        t,
        /^upbot_upbit_rest_calls_total\{actor="executor",group="order-test",status="\d+"\} /,
      );
      const feed =
        /^upbot_upbit_rest_calls_total\{actor="feed",group="[a-z-]+",status="200"\} [1-9]/m
          .test(t);
      if (sample(t, account)! >= 1 && executor >= 2 && feed) return t;
      // Thrown, so that a timeout says what was missing and what the scrape held.
      const held = t.split("\n").filter((l) =>
        l.startsWith("upbot_upbit_rest_calls_total") || l.startsWith("upbot_actor_up")
      );
      throw new Error(
        `account ${sample(t, account)}, executor ${executor}, feed ${feed}; ${held.join(" | ")}`,
      );
    });
    const restChecked = await promtool(["check", "metrics"], restText);
    assert.equal(restChecked.code, 0, restChecked.text);
    assert.equal(
      sample(restText, 'upbot_upbit_rest_rate_limited_total{actor="account",code="429"}'),
      0,
    );
    assert.equal(
      sample(restText, 'upbot_upbit_rest_rate_limited_total{actor="executor",code="418"}'),
      0,
    );
    assert.ok(
      sample(restText, 'upbot_upbit_rest_remaining_req{actor="account",group="default"}')! >= 0,
    );
    assert.equal(sample(restText, "upbot_feed_ws_reconnects_total"), 0);
    assert.equal(sample(restText, "upbot_private_ws_reconnects_total"), 0);

    // Both WebSockets dropped: each reconnect is counted.
    rig.sim.dropWebSockets();
    const after = await waitFor("both WebSocket reconnects in /metrics", async () => {
      const t = await scrapeText();
      return sample(t, "upbot_feed_ws_reconnects_total")! >= 1 &&
          sample(t, "upbot_private_ws_reconnects_total")! >= 1
        ? t
        : undefined;
    });
    const rechecked = await promtool(["check", "metrics"], after);
    assert.equal(rechecked.code, 0, rechecked.text);
  });
}
