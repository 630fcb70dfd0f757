/**
 * @module The account actor: `GET /v1/accounts` on an interval (and at once on `myAsset` events)
 * -> `upbit_account_snapshots` and `live_positions`. It owns upbot's one private WebSocket
 * connection and forwards `myOrder` changes to the order-poller as `wake`, and warns once a day
 * when the key expires within 14 days (`GET /v1/api_keys`). Skipped without keys
 * (then there is no private stream at all); backs off on errors.
 *
 * In live mode it watches its two connections for the reconciliation gate
 * (`lib/execution/system_gate.ts`): the private stream (lost on a drop or before its first open,
 * restored on an open) and REST (a failing balance poll loses it, a good one restores it). A
 * connection lost for longer than `RECONCILE_OUTAGE_LIMIT_SEC` closes the gate, and the executor
 * reconciles before its next order.
 *
 * The worker entry is `actors/account.ts`; this module holds the actor's definition.
 */
import { type Client, connect } from "../db/connect.ts";
import { ConnectionGate } from "../execution/system_gate.ts";
import { AccountSync, KeyExpiryWatch } from "./account.ts";
import { AccountConfig, keyedUpbitRest } from "./actor_specs.ts";
import { WorkLoop } from "./loop.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { RestCallStats } from "../upbit/rest_stats.ts";
import { UpbitPrivateWs } from "../upbit/ws_private.ts";
import type { UpbotActorDefinition } from "./runtime.ts";

/** How often the key's expiry is read (the warning itself comes at most once a day). */
const KEY_EXPIRY_CHECK_MS = 3_600_000;
/** How often outages are checked against the limit (at most; a quarter of a short limit). */
const GATE_CHECK_MS = 1000;

/** The account actor's definition (its state lives in the closure: one per worker). */
export function accountActor(): UpbotActorDefinition<typeof AccountConfig> {
  let sql: Client | undefined;
  let rest: UpbitRest | undefined;
  let ws: UpbitPrivateWs | undefined;
  let loop: WorkLoop | undefined;
  let expiryTimer: ReturnType<typeof setInterval> | undefined;
  let gateTimer: ReturnType<typeof setInterval> | undefined;
  let metricsTimer: ReturnType<typeof setInterval> | undefined;

  return {
    config: AccountConfig,
    start(ctx) {
      const c = ctx.config;
      if (!c.accessKey || !c.secretKey) {
        const missing = !c.accessKey ? "UPBIT_ACCESS_KEY" : "UPBIT_SECRET_KEY";
        ctx.log.info(`UpbitAccountRunner skipped (${missing} not set)`);
        ctx.exit("no keys");
        return;
      }
      sql = connect(c.db, { applicationName: ctx.dbApplicationName });
      const restStats = new RestCallStats();
      rest = keyedUpbitRest("account", c, ctx.log, restStats);
      // Only live orders wait for reconciliation: in shadow and test the gate is left alone.
      const gate = c.mode === "live"
        ? new ConnectionGate(sql, ctx.log, { limitMs: c.outageLimitSec * 1000 })
        : undefined;
      // Not connected yet counts as lost: a stream that never comes up must close the gate too.
      gate?.lost("private_stream");
      let positionStatus: Record<string, string> = {};
      const publishMetrics = () =>
        ctx.setMetrics({
          ...positionStatus,
          ...restStats.metrics(),
          private_ws_connected: ws?.stats().connected ?? false,
          private_ws_reconnects: ws?.stats().reconnects ?? 0,
          gate_watch: gate ? "live" : "off",
          private_stream_lost: gate?.isLost("private_stream") ?? null,
          rest_lost: gate?.isLost("rest") ?? null,
        });
      const sync = new AccountSync({
        sql,
        rest,
        markets: c.markets,
        log: ctx.log,
        onRestResult: (ok) => ok ? gate?.restored("rest") : gate?.lost("rest"),
      });
      loop = new WorkLoop({
        intervalMs: c.pollIntervalSec * 1000,
        signal: ctx.signal,
        log: ctx.log,
        onError: (err) => ctx.reportError(err),
        // Balances are informational: keep backing off instead of crashing the actor.
        maxFailures: Number.POSITIVE_INFINITY,
        pass: async () => {
          const positions = await sync.pollOnce();
          positionStatus = Object.fromEntries(positions.map((p) => [p.symbol, p.status]));
          publishMetrics();
        },
      });
      // The one private connection of this key (Upbit advises one, §7.1): balances here, order
      // changes forwarded to the order-poller as wakes.
      const wakePoller = () => ctx.send("order_poller", { type: "wake", topic: "order_attempts" });
      ws = new UpbitPrivateWs({
        url: c.privateWsUrl,
        accessKey: c.accessKey,
        secretKey: c.secretKey,
        // The key's pocket: a ban known to the REST client holds the upgrades, and a 418 at the
        // upgrade stops the REST calls (and, through it, the other actors).
        rateLimiter: rest.rateLimiter,
        logger: ctx.log,
        onAsset: () => loop?.wake(),
        onOrder: (event) => {
          // Final states only: a fill (`trade`) is followed by `done` or a later poll.
          if (event.state === "done" || event.state === "cancel" || event.state === "prevented") {
            wakePoller();
          }
        },
        onReconnect: () => {
          // Events may have been missed while disconnected: both sides resync over REST.
          loop?.wake();
          wakePoller();
        },
        onConnection: (connected) => {
          if (connected) gate?.restored("private_stream");
          else gate?.lost("private_stream");
          publishMetrics();
        },
        // Logged once by the client; recorded as this actor's last error. Polling goes on (and in
        // live mode the stream stays lost, so the gate closes once the limit has passed).
        onAuthError: (err) => ctx.reportError(err),
      });
      ws.start();
      if (gate) {
        gateTimer = setInterval(() => {
          gate.check().catch((err) => ctx.reportError(err));
        }, Math.min(GATE_CHECK_MS, c.outageLimitSec * 250));
      }
      metricsTimer = setInterval(publishMetrics, 1000);
      const expiry = new KeyExpiryWatch({ rest, accessKey: c.accessKey, log: ctx.log });
      const checkExpiry = () => {
        expiry.check().catch((err) => ctx.log.warn("GET /v1/api_keys failed", { error: err }));
      };
      checkExpiry();
      expiryTimer = setInterval(checkExpiry, KEY_EXPIRY_CHECK_MS);
      ctx.log.info(
        `UpbitAccountRunner started (interval=${c.pollIntervalSec}s mode=${c.mode}${
          gate ? ` outage_limit=${c.outageLimitSec}s` : ""
        })`,
      );
      loop.start();
    },
    async stop() {
      clearInterval(expiryTimer);
      clearInterval(gateTimer);
      clearInterval(metricsTimer);
      await loop?.stopped();
      await ws?.close();
      rest?.close();
      await sql?.end({ timeout: 2 });
    },
  };
}
