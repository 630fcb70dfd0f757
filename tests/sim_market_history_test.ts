import assert from "node:assert/strict";
import { parseJsonExactIds } from "../lib/upbit/schemas.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../sim/mod.ts";

type Row = Record<string, unknown>;

/** 2026-03-04 00:00 UTC (09:00 KST), a Wednesday. */
const MIDNIGHT = Date.UTC(2026, 2, 4);

async function withSim(
  options: SimulatorOptions,
  fn: (sim: Simulator, setClock: (ms: number) => void) => Promise<void>,
): Promise<void> {
  let clock = MIDNIGHT + 60_000;
  const sim = await startSimulator({ rate: 0, seed: 5, now: () => clock, ...options });
  try {
    await fn(sim, (ms) => {
      clock = ms;
    });
  } finally {
    await sim.close();
  }
}

async function get(sim: Simulator, path: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(sim.restUrl + path);
  // sequential_id exceeds 2^53: read it exactly (as a string), as the client does.
  return { status: res.status, body: parseJsonExactIds(await res.text()) };
}

const sid = (t: Row) => BigInt(t.sequential_id as string);

Deno.test("GET /v1/trades/ticks answers one UTC trade date per query: latest, days_ago, to, cursor", async () => {
  await withSim({}, async (sim, setClock) => {
    const put = (ms: number, price: number) => {
      setClock(ms);
      return sim.injectTrade({ market: "KRW-XRP", price, volume: 1, side: "BID" });
    };
    const twoDaysAgo = put(MIDNIGHT - 86_400_000 - 3_600_000, 2990);
    const late1 = put(MIDNIGHT - 2_000, 2998);
    const late2 = put(MIDNIGHT - 1_000, 2999);
    const early1 = put(MIDNIGHT + 1_000, 3001);
    const early2 = put(MIDNIGHT + 2_000, 3002);

    const latest = (await get(sim, "/v1/trades/ticks?market=KRW-XRP&count=500")).body as Row[];
    assert.deepEqual(latest.map(sid), [early2.sequentialId, early1.sequentialId]);
    assert.ok(latest.every((t) => t.trade_date_utc === "2026-03-04"));

    const yesterday = (await get(sim, "/v1/trades/ticks?market=KRW-XRP&count=500&days_ago=1"))
      .body as Row[];
    assert.deepEqual(yesterday.map(sid), [late2.sequentialId, late1.sequentialId]);
    assert.deepEqual(yesterday.map((t) => t.trade_time_utc), ["23:59:59", "23:59:58"]);

    const older = (await get(sim, "/v1/trades/ticks?market=KRW-XRP&count=500&days_ago=2"))
      .body as Row[];
    assert.deepEqual(older.map(sid), [twoDaysAgo.sequentialId]);
    assert.deepEqual(
      (await get(sim, "/v1/trades/ticks?market=KRW-XRP&count=500&days_ago=7")).body,
      [],
    );

    // `to` is the last trade time of that date, inclusive, as HHmmss or HH:mm:ss.
    for (const to of ["235958", "23:59:58"]) {
      const upTo = (await get(sim, `/v1/trades/ticks?market=KRW-XRP&days_ago=1&count=5&to=${to}`))
        .body as Row[];
      assert.deepEqual(upTo.map(sid), [late1.sequentialId], to);
    }
    const cursor = (await get(
      sim,
      `/v1/trades/ticks?market=KRW-XRP&days_ago=1&count=5&cursor=${late2.sequentialId}`,
    )).body as Row[];
    assert.deepEqual(cursor.map(sid), [late1.sequentialId]);
  });
});

Deno.test("GET /v1/trades/ticks ids exceed 2^53 and differ past a double's precision", async () => {
  await withSim({}, async (sim) => {
    // Same millisecond: ids n and n + 1, equal once rounded to a double.
    const a = sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 1, side: "BID" });
    const b = sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 1, side: "BID" });
    assert.equal(b.sequentialId, a.sequentialId + 1n);
    assert.ok(a.sequentialId > 2n ** 53n);
    const res = await fetch(sim.restUrl + "/v1/trades/ticks?market=KRW-BTC&count=2");
    const text = await res.text();
    assert.ok(text.includes(`"sequential_id":${b.sequentialId}`), "a plain JSON integer");
    const naive = JSON.parse(text) as Row[];
    assert.equal(naive[0]!.sequential_id, naive[1]!.sequential_id, "JSON.parse merges them");
    const exact = parseJsonExactIds(text) as Row[];
    assert.deepEqual(exact.map(sid), [b.sequentialId, a.sequentialId]);
  });
});

Deno.test("GET /v1/trades/ticks refuses bad days_ago, to, count and cursor", async () => {
  await withSim({ faults: { rate_limit_factor: 100 } }, async (sim) => {
    const base = "/v1/trades/ticks?market=KRW-BTC";
    for (
      const query of [
        "&days_ago=0",
        "&days_ago=8",
        "&days_ago=x",
        "&to=240000",
        "&to=12:30",
        "&to=12:3000",
        "&to=126000",
        "&count=0",
        "&count=501",
        "&cursor=abc",
        "&cursor=-1",
      ]
    ) {
      const { status, body } = await get(sim, base + query);
      assert.equal(status, 400, query);
      assert.equal((body as { error: { name: number } }).error.name, 400, query);
    }
    assert.equal((await get(sim, "/v1/trades/ticks?market=KRW-NOPE")).status, 404);
    assert.equal((await get(sim, "/v1/trades/ticks")).status, 400);
  });
});

Deno.test("historyDays backdates trades and candles deterministically from the seed", async () => {
  const pages: string[] = [];
  for (let run = 0; run < 2; run++) {
    await withSim(
      { historyDays: 2, historyRate: 1, markets: ["KRW-BTC", "KRW-ETH"] },
      async (sim) => {
        for (const daysAgo of [1, 2]) {
          const rows = (await get(
            sim,
            `/v1/trades/ticks?market=KRW-ETH&count=500&days_ago=${daysAgo}`,
          )).body as Row[];
          assert.equal(rows.length, 500, `trades ${daysAgo} day(s) before the newest date`);
          const date = new Date(MIDNIGHT - daysAgo * 86_400_000).toISOString().slice(0, 10);
          assert.ok(rows.every((t) => t.trade_date_utc === date), date);
          const ids = rows.map(sid);
          assert.ok(ids.every((id, i) => i === 0 || id < ids[i - 1]!), "newest first");
        }
        const days = (await get(sim, "/v1/candles/days?market=KRW-ETH&count=10")).body as Row[];
        // 2026-03-02 (from 00:01, two days before the clock), 03-03 and 03-04 (one minute).
        assert.deepEqual(
          days.map((d) => d.candle_date_time_utc),
          ["2026-03-04T00:00:00", "2026-03-03T00:00:00", "2026-03-02T00:00:00"],
        );
        assert.equal(days[0]!.prev_closing_price, days[1]!.trade_price);
        assert.equal(days[1]!.prev_closing_price, days[2]!.trade_price);
        const change = Number(days[0]!.trade_price) - Number(days[1]!.trade_price);
        assert.ok(Math.abs(Number(days[0]!.change_price) - change) < 1e-6);
        assert.ok(Number(days[1]!.candle_acc_trade_volume) > 0);
        pages.push(JSON.stringify(days));
      },
    );
  }
  assert.equal(pages[0], pages[1], "the same seed and clock give the same history");
});

Deno.test("GET /v1/candles/days, /weeks, /months aggregate by UTC day, Monday week and month", async () => {
  await withSim({}, async (sim, setClock) => {
    const put = (iso: string, price: number, volume: number) => {
      setClock(Date.parse(iso));
      sim.injectTrade({ market: "KRW-SOL", price, volume, side: "ASK" });
    };
    put("2026-02-27T10:00:00Z", 240_000, 1); // Friday, February
    put("2026-03-01T23:59:59Z", 245_000, 2); // Sunday, March: same week as the Friday
    put("2026-03-02T00:00:00Z", 250_000, 1); // Monday: a new week
    put("2026-03-04T00:00:30Z", 255_000, 1); // Wednesday (the clock's day)

    const days = (await get(sim, "/v1/candles/days?market=KRW-SOL&count=10")).body as Row[];
    assert.deepEqual(days.map((d) => String(d.candle_date_time_utc).slice(0, 10)), [
      "2026-03-04",
      "2026-03-02",
      "2026-03-01",
      "2026-02-27",
    ]);
    assert.equal(days[0]!.candle_date_time_kst, "2026-03-04T09:00:00");
    assert.equal(days[1]!.prev_closing_price, 245_000);
    assert.equal(days[1]!.change_price, 5_000);
    assert.equal(days[1]!.change_rate, Number((5_000 / 245_000).toFixed(10)));
    assert.equal(days[0]!.converted_trade_price, undefined);
    const converted = (await get(
      sim,
      "/v1/candles/days?market=KRW-SOL&count=1&converting_price_unit=KRW",
    )).body as Row[];
    assert.equal(converted[0]!.converted_trade_price, 255_000);
    const toBound = (await get(sim, "/v1/candles/days?market=KRW-SOL&count=1&to=2026-03-02"))
      .body as Row[];
    assert.equal(toBound[0]!.candle_date_time_utc, "2026-03-01T00:00:00", "to is exclusive");

    const weeks = (await get(sim, "/v1/candles/weeks?market=KRW-SOL&count=10")).body as Row[];
    assert.deepEqual(weeks.map((w) => w.first_day_of_period), ["2026-03-02", "2026-02-23"]);
    assert.deepEqual(
      [weeks[1]!.opening_price, weeks[1]!.trade_price, weeks[1]!.candle_acc_trade_volume],
      [240_000, 245_000, 3],
    );
    assert.deepEqual([weeks[0]!.opening_price, weeks[0]!.trade_price], [250_000, 255_000]);

    const months = (await get(sim, "/v1/candles/months?market=KRW-SOL&count=10")).body as Row[];
    assert.deepEqual(months.map((m) => m.candle_date_time_utc), [
      "2026-03-01T00:00:00",
      "2026-02-01T00:00:00",
    ]);
    assert.deepEqual(
      [months[0]!.opening_price, months[0]!.high_price, months[0]!.low_price],
      [245_000, 255_000, 245_000],
    );
    assert.equal(
      (await get(sim, "/v1/candles/days?market=KRW-SOL&converting_price_unit=BTC")).status,
      400,
    );
    assert.equal((await get(sim, "/v1/candles/weeks?market=KRW-SOL&count=201")).status, 400);
  });
});

Deno.test("public WS: candle.1m .. candle.240m stream the current candle of their unit", async () => {
  await withSim({}, async (sim, setClock) => {
    setClock(Date.parse("2026-03-04T01:07:10Z"));
    sim.injectTrade({ market: "KRW-BTC", price: 140_000_000, volume: 1, side: "BID" });
    const socket = new WebSocket(sim.wsUrl);
    socket.binaryType = "arraybuffer";
    const frames: Row[] = [];
    socket.onmessage = (ev) => {
      frames.push(parseJsonExactIds(new TextDecoder().decode(ev.data as ArrayBuffer)) as Row);
    };
    await new Promise((resolve) => (socket.onopen = resolve));
    try {
      socket.send(JSON.stringify([
        { ticket: "c" },
        { type: "candle.5m", codes: ["KRW-BTC"] },
        { type: "candle.240m", codes: ["KRW-BTC"] },
      ]));
      const until = async (cond: () => boolean) => {
        for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
      };
      await until(() => frames.length >= 2);
      // (A REALTIME push of the first trade's candles may follow: the snapshot comes first.)
      assert.deepEqual(
        frames.slice(0, 2).map((f) => [f.type, f.candle_date_time_utc, f.stream_type]),
        [
          ["candle.5m", "2026-03-04T01:05:00", "SNAPSHOT"],
          ["candle.240m", "2026-03-04T00:00:00", "SNAPSHOT"],
        ],
      );
      setClock(Date.parse("2026-03-04T01:09:00Z"));
      sim.injectTrade({ market: "KRW-BTC", price: 141_000_000, volume: 2, side: "BID" });
      const latest = (type: string) =>
        frames.findLast((f) => f.type === type && f.trade_price === 141_000_000);
      await until(() => latest("candle.5m") !== undefined && latest("candle.240m") !== undefined);
      const live = [latest("candle.5m")!, latest("candle.240m")!];
      assert.deepEqual(live.map((f) => [f.stream_type, f.candle_date_time_utc]), [
        ["REALTIME", "2026-03-04T01:05:00"],
        ["REALTIME", "2026-03-04T00:00:00"],
      ]);
      assert.deepEqual(
        [live[0]!.opening_price, live[0]!.trade_price, live[0]!.candle_acc_trade_volume],
        [140_000_000, 141_000_000, 3],
      );
      const bad = frames.length;
      socket.send(JSON.stringify([{ ticket: "d" }, { type: "candle.2m", codes: ["KRW-BTC"] }]));
      await until(() => frames.length > bad);
      assert.equal((frames[bad]!.error as Row).name, "INVALID_PARAM", "candle.2m is no unit");
    } finally {
      socket.close();
      await new Promise((r) => (socket.onclose = r));
    }
  });
});
