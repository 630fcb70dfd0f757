/**
 * @module The account actor: `GET /v1/accounts` on an interval (and at once on `myAsset` events)
 * -> `upbit_account_snapshots` and `live_positions`. Skipped without keys; backs off on errors.
 */
import { runActor } from "../lib/actors/actor.ts";
import { type Client, connect } from "../lib/db.ts";
import { AccountSync } from "../lib/pipeline/account.ts";
import { AccountConfig, keyedUpbitRest } from "../lib/pipeline/actor_specs.ts";
import { WorkLoop } from "../lib/pipeline/loop.ts";
import type { UpbitRest } from "../lib/upbit/rest.ts";
import { UpbitPrivateWs } from "../lib/upbit/ws_private.ts";

let sql: Client | undefined;
let rest: UpbitRest | undefined;
let ws: UpbitPrivateWs | undefined;
let loop: WorkLoop | undefined;

runActor({
  config: AccountConfig,
  start(ctx) {
    const c = ctx.config;
    if (!c.accessKey || !c.secretKey) {
      const missing = !c.accessKey ? "UPBIT_ACCESS_KEY" : "UPBIT_SECRET_KEY";
      ctx.log.info(`UpbitAccountRunner skipped (${missing} not set)`);
      ctx.exit("no keys");
      return;
    }
    sql = connect(c.db, { applicationName: "upbot-account" });
    rest = keyedUpbitRest("account", c, ctx.log);
    const sync = new AccountSync({ sql, rest, markets: c.markets, log: ctx.log });
    loop = new WorkLoop({
      intervalMs: c.pollIntervalSec * 1000,
      signal: ctx.signal,
      log: ctx.log,
      onError: (err) => ctx.reportError(err),
      // Balances are informational: keep backing off instead of crashing the actor.
      maxFailures: Number.POSITIVE_INFINITY,
      pass: async () => {
        const positions = await sync.pollOnce();
        ctx.setMetrics(Object.fromEntries(positions.map((p) => [p.symbol, p.status])));
      },
    });
    ws = new UpbitPrivateWs({
      url: c.privateWsUrl,
      accessKey: c.accessKey,
      secretKey: c.secretKey,
      myOrder: false,
      logger: ctx.log,
      onAsset: () => loop?.wake(),
      onReconnect: () => loop?.wake(),
    });
    ws.start();
    ctx.log.info(`UpbitAccountRunner started (interval=${c.pollIntervalSec}s)`);
    loop.start();
  },
  async stop() {
    await loop?.stopped();
    await ws?.close();
    rest?.close();
    await sql?.end({ timeout: 2 });
  },
});
