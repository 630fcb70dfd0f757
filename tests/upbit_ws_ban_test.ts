import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { UpbitRequestBudget } from "../lib/upbit/rate_limiter.ts";
import { UpbitPrivateWs } from "../lib/upbit/ws_private.ts";
import { UpbitPublicWs } from "../lib/upbit/ws_public.ts";

/**
 * A stand-in for Upbit's WebSocket endpoint that counts upgrade attempts and answers each with
 * `status` (101: upgrades and keeps the connection open).
 */
function upgradeServer(status: () => number) {
  const attempts: number[] = [];
  const sockets = new Set<WebSocket>();
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    attempts.push(Date.now());
    const answer = status();
    if (answer !== 101) {
      return new Response("refused", { status: answer });
    }
    const { socket, response } = Deno.upgradeWebSocket(req);
    sockets.add(socket);
    socket.onclose = () => sockets.delete(socket);
    return response;
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}/websocket/v1`,
    attempts,
    async close() {
      for (const s of sockets) s.close();
      await server.shutdown();
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function withClient(
  status: () => number,
  banBaseMs: number,
  fn: (s: ReturnType<typeof upgradeServer>, rest: UpbitRest, ws: UpbitPublicWs) => Promise<void>,
): Promise<void> {
  const restoreLog = setLogSink(() => {});
  const server = upgradeServer(status);
  // The REST client is never called: only its rate limiter (where bans are known) is used.
  const rest = new UpbitRest({ baseUrl: "http://127.0.0.1:9", rateLimiter: { banBaseMs } });
  const ws = new UpbitPublicWs({
    url: server.url,
    trades: ["KRW-BTC"],
    rest,
    // Without the hold, retries would come every 100 ms.
    reconnect: { baseMs: 100, maxMs: 100, jitter: 0 },
  });
  try {
    await fn(server, rest, ws);
  } finally {
    await ws.close();
    rest.close();
    await server.close();
    restoreLog();
  }
}

Deno.test("UpbitPublicWs tries no upgrade while its REST client knows of a ban, and connects after it", async () => {
  await withClient(() => 101, 60_000, async (server, rest, ws) => {
    const until = Date.now() + 700;
    rest.rateLimiter.applyBan(until);
    ws.start();
    await sleep(500);
    assert.equal(server.attempts.length, 0, "no attempt during the ban");
    await sleep(600);
    assert.equal(server.attempts.length, 1);
    assert.ok(server.attempts[0]! >= until, "the attempt came after the ban");
  });
});

Deno.test("UpbitPublicWs: a 418 at the upgrade is a ban of its REST client, and no upgrade is tried during it", async () => {
  await withClient(() => 418, 800, async (server, rest, ws) => {
    ws.start();
    const start = Date.now();
    while (server.attempts.length === 0 && Date.now() - start < 2000) await sleep(10);
    await sleep(100);
    assert.ok(rest.rateLimiter.bannedUntil() > Date.now(), "the REST client knows the ban");
    await sleep(500);
    assert.equal(server.attempts.length, 1, "no upgrade during the ban");
  });
});

Deno.test("UpbitPublicWs waits a whole websocket-connect window after an upgrade refused with 429", async () => {
  await withClient(() => 429, 60_000, async (server, rest, ws) => {
    ws.start();
    await sleep(900);
    assert.equal(server.attempts.length, 1, "no retry within the window");
    await sleep(400);
    assert.equal(server.attempts.length, 2);
    assert.ok(server.attempts[1]! - server.attempts[0]! >= 1000);
    assert.equal(rest.rateLimiter.bannedUntil(), 0, "a 429 is no ban");
  });
});

Deno.test("UpbitPrivateWs: a 418 at the upgrade is a ban of its exchange rate limiter; no upgrade during it, one after", async () => {
  const restoreLog = setLogSink(() => {});
  const server = upgradeServer(() => server.attempts.length === 1 ? 418 : 101);
  const rateLimiter = new UpbitRequestBudget({ banBaseMs: 700 });
  const ws = new UpbitPrivateWs({
    url: server.url.replace(/\/websocket\/v1$/, "/websocket/v1/private"),
    accessKey: "a",
    secretKey: "s",
    rateLimiter,
    reconnect: { baseMs: 100, maxMs: 100, jitter: 0 },
  });
  try {
    ws.start();
    const start = Date.now();
    while (server.attempts.length === 0 && Date.now() - start < 2000) await sleep(10);
    await sleep(100);
    const until = rateLimiter.bannedUntil();
    assert.ok(until > Date.now(), "the exchange rate limiter knows the ban");
    await sleep(400);
    assert.equal(server.attempts.length, 1, "no upgrade during the ban");
    await sleep(600);
    assert.equal(server.attempts.length, 2, "one upgrade after it");
    assert.ok(server.attempts[1]! >= until);
  } finally {
    await ws.close();
    await server.close();
    restoreLog();
  }
});
