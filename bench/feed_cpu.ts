/**
 * @module Feed CPU per trade: what the feed's own work costs for each trade (WebSocket frame ->
 * `parseJsonExactIds` -> validation -> dedup -> 1-second bars: `lib/pipeline/feed.ts` with
 * `lib/upbit/ws_public.ts`), next to a bare client that only receives and `JSON.parse`s the same
 * frames, both timed by this process's CPU time (user + system) per trade.
 *
 * CPU time rather than wall time, so that a loaded machine slows both without changing what they
 * cost. A child process replays the same pre-built `trade` frames (DEFAULT format, 10 markets) to
 * every connection as fast as it takes them, so neither the simulator's pace nor the timers of a
 * slow stream enter the figure. The database is left out (the feed writes into a stub): a write is
 * one statement per flush (every 250 ms) whatever the trade rate, and its cost is the database's
 * (`bench/feed_ingest.ts` measures the whole path).
 *
 * Before/after in one run: pass the root of another checkout (e.g. `git worktree add /tmp/before
 * HEAD~3`); its `lib/pipeline/feed.ts` is measured too, the rounds alternating.
 *
 * Usage: deno run -A bench/feed_cpu.ts [trades] [rounds] [other checkout]
 */
import process from "node:process";
import { configureLogging, createLogger } from "../lib/log.ts";
import type { Feed } from "../lib/pipeline/feed.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { fmt, out, sleep, TEN_MARKETS } from "./_harness.ts";

function cpuNow(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** `n` trade frames as Upbit (and the simulator) send them, 60 trades per ms of trade time. */
function frames(n: number): string[] {
  const list: string[] = [];
  const t0 = Date.now() - 60_000;
  for (let i = 0; i < n; i++) {
    const ts = t0 + Math.floor(i / 60);
    list.push(
      JSON.stringify({
        type: "trade",
        code: TEN_MARKETS[i % TEN_MARKETS.length],
        timestamp: ts + 3,
        trade_date: "2026-12-01",
        trade_time: "19:01:02",
        trade_timestamp: ts,
        trade_price: 143_250_000 + (i % 17) * 1000,
        trade_volume: 0.00123456 + (i % 7) * 1e-8,
        ask_bid: i % 3 ? "BID" : "ASK",
        prev_closing_price: 143_000_000,
        change: "RISE",
        change_price: 250_000,
        sequential_id: 0,
        best_ask_price: 143_251_000,
        best_ask_size: 0.5,
        best_bid_price: 143_249_000,
        best_bid_size: 0.25,
        stream_type: "REALTIME",
      }).replace('"sequential_id":0', `"sequential_id":${17303368620470001n + BigInt(i)}`),
    );
  }
  return list;
}

/** The replay server (child process): every connection gets all frames after its request. */
async function serve(n: number): Promise<void> {
  const list = frames(n).map((f) => new TextEncoder().encode(f));
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
    if (new URL(req.url).pathname.startsWith("/v1/")) return Response.json([]); // no backfill
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = async (ev) => {
      if (ev.data === "PING") return;
      for (let i = 0; i < list.length; i++) {
        if (socket.readyState !== WebSocket.OPEN) return;
        socket.send(list[i]!);
        if (i % 500 === 0) { while (socket.bufferedAmount > 1 << 20) await sleep(1); }
      }
    };
    return response;
  });
  out(`port ${server.addr.port}`);
  await server.finished;
}

/** CPU µs per trade of the bare client receiving all `n` trades. */
async function bareRound(url: string, n: number): Promise<number> {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((r, j) => {
    ws.onopen = r;
    ws.onerror = j;
  });
  let trades = 0;
  const done = Promise.withResolvers<void>();
  const decoder = new TextDecoder();
  const c0 = cpuNow();
  ws.onmessage = (ev) => {
    const text = typeof ev.data === "string" ? ev.data : decoder.decode(ev.data as ArrayBuffer);
    const parsed = JSON.parse(text);
    trades += Array.isArray(parsed) ? parsed.length : 1;
    if (trades >= n) done.resolve();
  };
  ws.send(JSON.stringify([{ ticket: "bench" }, { type: "trade", codes: TEN_MARKETS }]));
  await done.promise;
  const cpu = cpuNow() - c0;
  const closed = new Promise((r) => (ws.onclose = r));
  ws.close();
  await closed;
  return cpu / n;
}

/** CPU µs per trade of `FeedClass` taking all `n` trades (into a stub database). */
async function feedRound(FeedClass: typeof Feed, url: string, n: number): Promise<number> {
  const rest = new UpbitRest({ baseUrl: url.replace("ws://", "http://") });
  // Accepts the feed's queries (the start-up backfill's read, the upserts) and does nothing.
  const sql = (() => Promise.resolve([])) as unknown as ConstructorParameters<
    typeof Feed
  >[0]["sql"];
  const feed = new FeedClass({
    sql,
    markets: TEN_MARKETS,
    wsUrl: url,
    rest,
    log: createLogger("feed"),
    onFinalBars: () => {},
    allowedLatenessMs: 2000,
  });
  const c0 = cpuNow();
  try {
    await feed.start();
    while (feed.stats().trades < n) await sleep(5);
    const s = feed.stats();
    if (s.lateDropped > 0 || s.duplicates > 0 || s.trades !== n) {
      throw new Error(`the feed did not take every trade once: ${JSON.stringify(s)}`);
    }
    return (cpuNow() - c0) / n;
  } finally {
    await feed.stop();
    rest.close();
  }
}

if (import.meta.main) {
  if (Deno.args[0] === "serve") {
    await serve(Number(Deno.args[1]));
    Deno.exit(0);
  }
  configureLogging({ level: "error" });
  const n = Number(Deno.args[0] ?? 200_000);
  const rounds = Number(Deno.args[1] ?? 3);
  const other = Deno.args[2];
  const variants: [string, typeof Feed][] = [
    ["this checkout", (await import("../lib/pipeline/feed.ts")).Feed],
  ];
  if (other) {
    const url = new URL(`lib/pipeline/feed.ts`, `file://${Deno.realPathSync(other)}/`);
    variants.unshift([other, (await import(url.href)).Feed]);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "serve", String(n)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/port (\d+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the replay server exited");
    text += value;
  }
  const url = `ws://127.0.0.1:${/port (\d+)/.exec(text)![1]}/websocket/v1`;
  const results = new Map<string, number[]>([
    ["bare client", []],
    ...variants.map(([name]) => [name, []] as [string, number[]]),
  ]);
  try {
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? variants : [...variants].reverse();
      const line: string[] = [];
      const bare = await bareRound(url, n);
      results.get("bare client")!.push(bare);
      line.push(`bare client ${fmt(bare, 2)}`);
      for (const [name, FeedClass] of order) {
        const us = await feedRound(FeedClass, url, n);
        results.get(name)!.push(us);
        line.push(`feed (${name}) ${fmt(us, 2)}`);
      }
      out(`round ${r + 1}, CPU µs per trade: ${line.join(", ")} (load ${Deno.loadavg()[0]})`);
    }
  } finally {
    child.kill();
    await child.status;
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const bare = median(results.get("bare client")!);
  for (const [name, xs] of results) {
    out(
      `median ${name}: ${fmt(median(xs), 2)} µs/trade (${
        fmt(median(xs) / bare, 2)
      }x the bare client)`,
    );
  }
}
