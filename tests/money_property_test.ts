/**
 * Property test of the live money path (issue #9): seeded random sequences of executor restarts,
 * mode changes (live / shadow), database resets made while the ledger is flat, exchange faults
 * (5xx before the exchange, 5xx after the order was created, burnt identifiers, maintenance, lost
 * answers, and creates the exchange processes after the client gave up), market moves and paper
 * trades, ending in live mode with faults off and the paper book flat,
 * must leave:
 * - at most one entry order per paper trade;
 * - never more sold than bought per market by upbot's orders;
 * - the exchange holding exactly the owner's starting coins plus the recorded dust.
 *
 * More seeds: `MONEY_SEEDS=1,2,3 deno test --allow-all tests/money_property_test.ts`.
 */
import assert from "node:assert/strict";
import { dec, formatDec, ZERO } from "../lib/decimal.ts";
import { Executor } from "../lib/execution/executor.ts";
import { decideTradeMode } from "../lib/execution/guard.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import { openEntry } from "../lib/store/paper_trades.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { startSimulator } from "../sim/mod.ts";
import { dbTest, openTestDatabase, type TestDatabase } from "./_db.ts";
import { mulberry32 } from "../lib/random.ts";
import { executorConfig } from "./_live_orders.ts";

const MARKETS = ["KRW-BTC", "KRW-ETH"];
const OWNER_BTC = "0.3";
const SEEDS = (Deno.env.get("MONEY_SEEDS") ?? "11,29,47").split(",").map(Number);
/**
 * Client timeout: shorter than the slowest simulated create, so answers are lost while the create
 * is still on its way and look-ups race it (where a double entry was once found).
 */
const CLIENT_TIMEOUT_MS = 1000;
/** Longest processing delay of a create here (`latency_ms` + `create_delay_ms`). */
const MAX_CREATE_DELAY_MS = 1600;
const STEPS = 70;

async function unsettledCount(db: TestDatabase): Promise<number> {
  const [row] = await db.sql`select count(*)::int as n from upbit_order_attempts
    where state in ('pending', 'sent', 'unknown', 'open', 'partially_filled')`;
  return row!.n;
}

async function ledgerOpen(db: TestDatabase): Promise<boolean> {
  const [row] = await db.sql`select count(*)::int as n from position_ledger where open_volume > 0`;
  return row!.n > 0;
}

for (const seed of SEEDS) {
  dbTest(
    `money property: restarts, modes, resets, faults and moves keep the money invariants (seed ${seed})`,
    async (first) => {
      const random = mulberry32(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
      const sim = await startSimulator({
        rate: 0,
        seed,
        markets: MARKETS,
        balances: { "KRW-BTC": OWNER_BTC },
      });
      const rest = new UpbitRest({
        baseUrl: sim.restUrl,
        accessKey: sim.accessKey,
        secretKey: sim.secretKey,
        timeoutMs: CLIENT_TIMEOUT_MS,
      });
      const lines: string[] = [];
      const restore = setLogSink((line) => lines.push(line));
      const databases: TestDatabase[] = [first];
      let db = first;
      let mode: "live" | "shadow" = "live";
      const newExecutor = async () => {
        const config = executorConfig(sim, mode, { EXECUTOR_MAX_RETRIES: "1" });
        const ex = new Executor({
          sql: db.sql,
          rest: mode === "shadow" ? null : rest,
          decision: decideTradeMode(config),
          settings: {
            orderKrwAmount: 10000,
            maxOrdersPerMin: 600,
            maxRetries: config.EXECUTOR_MAX_RETRIES,
            shadowEnabled: true,
            maxSignalAgeSec: 60,
          },
          log: createLogger("executor"),
          unknownSettleMs: 0,
          // Longer than any create here may take: a fresh identifier is never used while the old
          // one's create can still make an order.
          rotationWaitMs: 2 * MAX_CREATE_DELAY_MS,
          retryBackoff: { baseMs: 10, maxMs: 50 },
        });
        await ex.start();
        return ex;
      };
      const poller = () =>
        new OrderPoller({ sql: db.sql, rest, maxPolls: 50, log: createLogger("order_poller") });
      /** One executor and poller pass; a failed pass (reads timing out) is retried, as the actors are. */
      let slow = false;
      const pass = async (ex: Executor) => {
        if (slow) {
          // Each pass's creates are slow or quick: a re-send can overtake a create still waiting
          // at the exchange (it is refused as used while that create has made no order yet).
          sim.setFaults({ create_delay_ms: random() < 0.5 ? 0 : 800 + Math.floor(random() * 700) });
        }
        try {
          await ex.runOnce();
          await poller().pollOnce();
        } catch (err) {
          lines.push(`pass failed: ${(err as Error).message}`);
        }
      };
      const prices: Record<string, number> = { "KRW-BTC": 140_500_000, "KRW-ETH": 5_000_000 };
      const steps: string[] = [];
      try {
        let ex = await newExecutor();
        for (let step = 0; step < STEPS; step++) {
          const r = random();
          if (r < 0.25) {
            // The paper book: enter a flat market, or exit an open one.
            const market = pick(MARKETS);
            const open = await openEntry(db.sql, market);
            const price = prices[market]!;
            if (!open) {
              await insertPaperEvent(db.sql, {
                action: "ENTER_LONG",
                market,
                ts: Date.now(),
                price,
                qty: 0.0001,
                fee: 1,
                ev: 0.1,
              }, "default");
              steps.push(`enter ${market}`);
            } else {
              await insertPaperEvent(db.sql, {
                action: "EXIT_LONG",
                market,
                ts: Date.now(),
                price,
                qty: Number(open.qty),
                fee: 1,
                pnl: 0,
                holdSec: 1,
                reason: "EV_BAD",
                entryTs: open.entry_ts.getTime(),
                entryPrice: Number(open.entry_price),
                ev: -0.3,
              }, "default");
              steps.push(`exit ${market}`);
            }
          } else if (r < 0.6) {
            await pass(ex);
            steps.push("pass");
          } else if (r < 0.65) {
            ex = await newExecutor();
            steps.push("restart");
          } else if (r < 0.71) {
            mode = mode === "live" ? "shadow" : "live";
            ex = await newExecutor();
            steps.push(`mode ${mode}`);
          } else if (r < 0.81) {
            const fault = pick([
              "error_rate",
              "server_error_after_create_rate",
              "server_error_burn_rate",
              "offline",
              "lost",
              "slow",
              "slow",
              "slow",
              "none",
            ]);
            sim.setFaults({
              error_rate: fault === "error_rate" ? 0.3 : 0,
              server_error_after_create_rate: fault === "server_error_after_create_rate" ? 0.7 : 0,
              server_error_burn_rate: fault === "server_error_burn_rate" ? 0.7 : 0,
              offline_markets: fault === "offline" ? [pick(MARKETS)] : [],
              lost_response_rate: fault === "lost" ? 0.5 : 0,
              // Creates (and everything else) slower than the client's timeout, with burns and
              // 5xx after create mixed in.
              latency_ms: fault === "slow" ? 100 : 0,
              create_delay_ms: 0,
            });
            slow = fault === "slow";
            if (fault === "slow") {
              sim.setFaults({ server_error_burn_rate: 0.2, server_error_after_create_rate: 0.2 });
            }
            steps.push(`faults ${fault}`);
          } else if (r < 0.86) {
            const market = pick(MARKETS);
            prices[market] = Math.round(prices[market]! * (1 + (random() - 0.5) * 0.01));
            sim.injectTrade({ market, price: prices[market]!, volume: 0.001, side: "BID" });
            steps.push(`move ${market}`);
          } else if (
            mode === "live" && !(await ledgerOpen(db)) && (await unsettledCount(db)) === 0
          ) {
            // A database reset while the ledger is flat (a Docker volume forgotten, say).
            db = await openTestDatabase(first.backend, { migrated: true });
            databases.push(db);
            ex = await newExecutor();
            steps.push("reset");
          }
        }
        // The end: live, faults off, the paper book flat; drive until everything settles.
        slow = false;
        sim.setFaults({
          error_rate: 0,
          server_error_after_create_rate: 0,
          server_error_burn_rate: 0,
          offline_markets: [],
          lost_response_rate: 0,
          latency_ms: 0,
          create_delay_ms: 0,
        });
        mode = "live";
        ex = await newExecutor();
        for (const market of MARKETS) {
          const open = await openEntry(db.sql, market);
          if (!open) continue;
          await insertPaperEvent(db.sql, {
            action: "EXIT_LONG",
            market,
            ts: Date.now(),
            price: prices[market]!,
            qty: Number(open.qty),
            fee: 1,
            pnl: 0,
            holdSec: 1,
            reason: "EV_BAD",
            entryTs: open.entry_ts.getTime(),
            entryPrice: Number(open.entry_price),
            ev: -0.3,
          }, "default");
        }
        // Creates still being processed land, and rotations wait rotationWaitMs: up to 30 s.
        let done = false;
        const until = Date.now() + 30_000;
        while (!done && Date.now() < until) {
          await pass(ex);
          done = (await unsettledCount(db)) === 0 && !(await ledgerOpen(db));
          if (!done) await new Promise((res) => setTimeout(res, 50));
        }
        const trace = `seed ${seed}: ${steps.join(", ")}\n${lines.slice(-10).join("\n")}`;
        assert.ok(done, `not settled: ${trace}`);

        // 1. At most one entry order per paper trade (per installation: ids restart after a reset).
        const orders = sim.orders();
        const entries = new Map<string, number>();
        for (const o of orders) {
          const m = /^(paper-[a-z2-7]{8}-\d+-ENTER_LONG)(-r\d+)?$/.exec(o.identifier ?? "");
          if (m) entries.set(m[1]!, (entries.get(m[1]!) ?? 0) + 1);
        }
        for (const [key, n] of entries) {
          if (n === 1) continue;
          // Say what happened to that paper trade: its orders, attempts and identifiers.
          const attempts = [];
          for (const d of databases) {
            attempts.push(
              ...await d.sql`select a.id, a.identifier, a.state, a.reason, a.retry_count,
                  a.error_msg, array_agg(i.identifier) as used
                from upbit_order_attempts a join upbit_order_identifiers i on i.attempt_id = a.id
                where a.identifier like ${key + "%"} group by a.id`,
            );
          }
          const own = orders.filter((o) => o.identifier?.startsWith(key));
          assert.fail(
            `${key}: ${n} entry orders ${JSON.stringify(own)}; attempts ${
              JSON.stringify(attempts)
            }. ${trace}\n${lines.filter((l) => l.includes(key)).join("\n")}`,
          );
        }
        // 2. Never more sold than bought per market.
        for (const market of MARKETS) {
          let bought = ZERO;
          let sold = ZERO;
          for (const o of orders.filter((x) => x.market === market)) {
            if (!o.identifier?.startsWith("paper-")) continue;
            if (o.side === "bid") bought += dec(o.executed_volume);
            else sold += dec(o.executed_volume);
          }
          assert.ok(sold <= bought, `${market}: sold ${sold} > bought ${bought}. ${trace}`);
        }
        // 3. The exchange holds the owner's coins plus the recorded dust, nothing else.
        const { data: accounts } = await rest.getAccounts();
        for (const market of MARKETS) {
          const currency = market.slice(4);
          let dust = ZERO;
          for (const d of databases) {
            const [row] = await d.sql`select coalesce(sum(volume), 0)::text as v
            from position_adjustments where symbol = ${market} and kind = 'dust'`;
            dust += dec(row!.v);
          }
          const owner = market === "KRW-BTC" ? dec(OWNER_BTC) : ZERO;
          const held = dec(accounts.find((a) => a.currency === currency)?.balance ?? "0");
          assert.equal(formatDec(held), formatDec(owner + dust), `${market} balance. ${trace}`);
        }
        assert.ok(entries.size > 0, `the sequence traded at all. ${trace}`);
      } finally {
        restore();
        rest.close();
        await sim.close();
        for (const d of databases.slice(1)) await d.close();
      }
    },
  );
}
