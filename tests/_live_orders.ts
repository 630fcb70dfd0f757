/**
 * @module Test helpers for risk and reconciliation tests: a simulator with a signed client, live
 * orders placed on it and recorded through the attempts store the way the executor records them
 * (pending -> sent -> open -> filled/cancelled), and last prices in market_1s.
 */
import { type Config, parseConfig } from "../lib/config.ts";
import type { Client, Sql } from "../lib/db/connect.ts";
import {
  Executor,
  type ExecutorOptions,
  type ExecutorSettings,
} from "../lib/execution/executor.ts";
import { decideTradeMode } from "../lib/execution/guard.ts";
import { riskLimits } from "../lib/execution/risk_gate.ts";
import { LIVE_GUARD_PHRASE } from "../lib/execution/guard.ts";
import { createLogger, type Logger, setLogSink } from "../lib/log.ts";
import {
  attemptById,
  type AttemptRow,
  insertAttempt,
  installationId,
  transitionAttempt,
} from "../lib/store/order_attempts.ts";
import { averagePrice } from "../lib/execution/exchange_order.ts";
import { stateOfExchangeOrder } from "../lib/execution/order_state.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../sim/mod.ts";
import { dec, formatDec } from "../lib/decimal.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";

/**
 * The settings of an executor trading in `mode` with `sim`'s keys: every live guard condition met
 * (they count only in live mode), the default policy profile, `extra` on top.
 */
export function executorConfig(
  sim: { accessKey: string; secretKey: string },
  mode: string,
  extra: Record<string, string> = {},
): Config {
  return parseConfig({
    UPBIT_TRADE_MODE: mode,
    UPBIT_ACCESS_KEY: sim.accessKey,
    UPBIT_SECRET_KEY: sim.secretKey,
    LIVE_TRADING_ENABLED: "true",
    LIVE_GUARD_PHRASE,
    PAPER_POLICY_PROFILE: "default",
    ...extra,
  });
}

/**
 * A live executor as the executor actor builds one from `config` (settings and risk limits of
 * `lib/pipeline/actor_specs.ts`), with `options` on top (tests shorten its waits).
 */
export function liveExecutor(
  sql: Client,
  rest: UpbitRest,
  config: Config,
  log: Logger,
  options: Partial<Omit<ExecutorOptions, "settings">> & { settings?: Partial<ExecutorSettings> } =
    {},
): Executor {
  const { settings, ...others } = options;
  return new Executor({
    sql,
    rest,
    decision: decideTradeMode(config),
    settings: {
      orderKrwAmount: config.ORDER_KRW_AMOUNT,
      maxOrdersPerMin: config.MAX_ORDERS_PER_MIN,
      maxRetries: config.EXECUTOR_MAX_RETRIES,
      shadowEnabled: config.SHADOW_ENABLED,
      maxSignalAgeSec: config.EXECUTOR_MAX_SIGNAL_AGE_SEC,
      ...settings,
    },
    risk: { limits: riskLimits(config) },
    log,
    ...others,
  });
}

/** A running simulator with a signed client; `close` ends both. */
export interface SimHandle {
  sim: Simulator;
  rest: UpbitRest;
  log: Logger;
  close(): Promise<void>;
}

/** Starts a quiet simulator (no generated trades) and a signed client of it. */
export async function startSim(options: SimulatorOptions = {}): Promise<SimHandle> {
  const restoreLog = setLogSink(() => {});
  const sim = await startSimulator({ rate: 0, seed: 11, ...options });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
  });
  return {
    sim,
    rest,
    log: createLogger("test"),
    async close() {
      rest.close();
      await sim.close();
      restoreLog();
    },
  };
}

/** Stores each market's current ticker price as its newest 1-second close. */
export async function storeLastPrices(sql: Sql, rest: UpbitRest, markets: string[]) {
  const { data } = await rest.getTicker({ markets });
  const ts = new Date(Math.floor(Date.now() / 1000) * 1000);
  for (const t of data) {
    const p = t.trade_price;
    await sql`insert into market_1s (symbol, ts, open, high, low, close, volume, quote_volume,
        trade_count, buy_volume, sell_volume, is_final)
      values (${t.market}, ${ts}, ${p}, ${p}, ${p}, ${p}, 0, 0, 0, 0, 0, true)
      on conflict (symbol, ts) do update set close = excluded.close`;
  }
  return new Map(data.map((t) => [t.market, t.trade_price]));
}

let sequence = 0;

/** A live order as the executor would record it, not sent yet (state pending). */
export async function pendingAttempt(
  sql: Sql,
  o: { market: string; side: "bid" | "ask"; krw?: number; volume?: string },
): Promise<AttemptRow> {
  const inst = await installationId(sql);
  const n = ++sequence;
  const action = o.side === "bid" ? "ENTER_LONG" : "EXIT_LONG";
  const identifier = `paper-${inst}-${900_000 + n}-${action}`;
  const request: Record<string, string> = o.side === "bid"
    ? { market: o.market, side: "bid", ord_type: "price", price: String(o.krw), identifier }
    : { market: o.market, side: "ask", ord_type: "market", volume: o.volume!, identifier };
  const row = await insertAttempt(sql, {
    symbol: o.market,
    action,
    mode: "live",
    side: o.side,
    ord_type: o.side === "bid" ? "price" : "market",
    price: o.side === "bid" ? String(o.krw) : null,
    volume: o.side === "ask" ? o.volume! : null,
    paper_trade_id: null,
    identifier,
    state: "pending",
    request_json: request,
  });
  if (!row) throw new Error(`attempt ${identifier} not inserted`);
  return row;
}

/**
 * Sends a pending attempt to the simulator and records its final state from Upbit's answer
 * (market orders fill at once in the simulator).
 */
export async function sendAndSettle(sql: Sql, rest: UpbitRest, a: AttemptRow): Promise<AttemptRow> {
  const sent = await transitionAttempt(sql, a.id, "pending", "sent");
  const result = await rest.postOrder(a.request_json as never);
  if (result.kind !== "accepted") {
    throw new Error(`order ${a.identifier} not accepted: ${result.kind}`);
  }
  const open = await transitionAttempt(sql, sent!.id, "sent", "open", {
    uuid: result.order.uuid,
    response_json: result.order,
  });
  const { data: order } = await rest.getOrder({ uuid: result.order.uuid });
  const state = stateOfExchangeOrder(order);
  const done = await transitionAttempt(sql, open!.id, "open", state, {
    final_state: order.state === "done" || order.state === "cancel" ? order.state : null,
    executed_volume: order.executed_volume,
    paid_fee: order.paid_fee,
    avg_price: averagePrice(order),
    response_json: order,
  });
  return done!;
}

/** Places a live order end to end: attempt, send, final state. */
export async function placeLive(
  sql: Sql,
  rest: UpbitRest,
  o: { market: string; side: "bid" | "ask"; krw?: number; volume?: string },
): Promise<AttemptRow> {
  return await sendAndSettle(sql, rest, await pendingAttempt(sql, o));
}

/** A live sell the executor judged a conflict ({@linkcode conflictSell}). */
export interface ConflictSell {
  /** The live buy whose volume the sell sells. */
  buy: AttemptRow;
  /** The sell, in state `conflict` (reason `identifier_conflict`). */
  sell: AttemptRow;
  /** The uuid of the order Upbit holds under the sell's identifier. */
  foundUuid: string;
  /** The live executor that judged it (its passes also run the live closer). */
  executor: Executor;
}

/**
 * A live buy of `market` placed on the simulator, then a sell of its volume whose create answer
 * was lost (`unknown`), judged a conflict by a live executor's look-up by identifier. What Upbit
 * holds under the sell's identifier is `found`:
 * - `"sell"`: the sell itself, created and filled; the database's clock is 11 minutes ahead of
 *   Upbit's, so it looks created before the attempt (the case of tests/conflict_sell_test.ts);
 * - `"foreign buy"`: someone else's buy placed under the sell's identifier (the sell never
 *   reached Upbit; its coins are still on the account).
 */
export async function conflictSell(
  sql: Client,
  h: SimHandle,
  o: { market: string; found: "sell" | "foreign buy" },
): Promise<ConflictSell> {
  const buy = await placeLive(sql, h.rest, { market: o.market, side: "bid", krw: 10_000 });
  const sell = await pendingAttempt(sql, {
    market: o.market,
    side: "ask",
    volume: buy.executed_volume!,
  });
  const body = o.found === "sell" ? sell.request_json! : {
    market: o.market,
    side: "bid",
    ord_type: "price",
    price: "6000",
    identifier: sell.identifier,
  };
  const created = await h.rest.postOrder(body as never);
  if (created.kind !== "accepted") {
    throw new Error(`order under ${sell.identifier}: ${created.kind}`);
  }
  await transitionAttempt(sql, sell.id, "pending", "sent");
  await transitionAttempt(sql, sell.id, "sent", "unknown", { reason: "timeout" });
  if (o.found === "sell") {
    await sql`update upbit_order_attempts set ts = ts + interval '11 minutes' where id = ${sell.id}`;
  }
  const executor = liveExecutor(sql, h.rest, executorConfig(h.sim, "live"), h.log, {
    settings: { maxOrdersPerMin: 600 },
    unknownSettleMs: 0,
  });
  await executor.start();
  let row: AttemptRow | undefined;
  for (let i = 0; i < 10 && row?.state !== "conflict"; i++) {
    await executor.runOnce();
    row = (await attemptById(sql, sell.id)) ?? undefined;
  }
  if (row?.state !== "conflict") {
    throw new Error(`${sell.identifier} is ${row?.state}, not conflict`);
  }
  return { buy, sell: row, foundUuid: created.order.uuid, executor };
}

/** The simulator account's balance of `currency`, a plain decimal string ("0" when none). */
export async function balanceOf(rest: UpbitRest, currency: string): Promise<string> {
  const { data } = await rest.getAccounts();
  return formatDec(dec(data.find((a) => a.currency === currency)?.balance ?? "0"));
}

/**
 * The owner's own coins of `market`: a market buy of `krw` placed by hand (under `identifier`,
 * not one of upbot's). Returns the owner's balance of the coin after it.
 */
export async function ownerBuysByHand(
  rest: UpbitRest,
  market: string,
  identifier: string,
  krw = 50_000,
): Promise<string> {
  const own = await rest.postOrder({
    market,
    side: "bid",
    ord_type: "price",
    price: String(krw),
    identifier,
  });
  if (own.kind !== "accepted") throw new Error(`the owner's buy: ${own.kind}`);
  return await balanceOf(rest, market.slice(market.indexOf("-") + 1));
}

/** A paper ENTER_LONG of the default profile at `price`, as the evaluator writes it. */
export async function paperEnter(sql: Sql, market: string, price: number): Promise<number> {
  return await insertPaperEvent(sql, {
    action: "ENTER_LONG",
    market,
    ts: Date.now(),
    price,
    qty: 0.0001,
    fee: 1,
    ev: 0.1,
  }, "default");
}

/** A paper EXIT_LONG of the default profile at `price` (its entry 5 s before). */
export async function paperExit(sql: Sql, market: string, price: number): Promise<number> {
  return await insertPaperEvent(sql, {
    action: "EXIT_LONG",
    market,
    ts: Date.now(),
    price,
    qty: 0.0001,
    fee: 1,
    pnl: 0,
    holdSec: 5,
    reason: "EV_BAD",
    entryTs: Date.now() - 5000,
    entryPrice: price,
    ev: -0.3,
  }, "default");
}

/**
 * `sql` with one query held back, to force an interleaving of two actors: once `arm`ed, the first
 * query whose text holds `fragment` runs `before` (e.g. another actor's pass) first. `fired` says
 * whether it has run. A wrapper of the database client: upbot's code runs unchanged.
 */
export function holdingBack(sql: Client, fragment: string): {
  client: Client;
  arm(before: () => Promise<void>): void;
  readonly fired: boolean;
} {
  let before: (() => Promise<void>) | null = null;
  let fired = false;
  const client = new Proxy(sql, {
    apply(target, thisArg, args) {
      const text = Array.isArray(args[0]) ? (args[0] as string[]).join("?") : "";
      if (before && text.includes(fragment)) {
        const run = before;
        before = null;
        return (async () => {
          await run();
          fired = true;
          return await Reflect.apply(target, thisArg, args);
        })();
      }
      return Reflect.apply(target, thisArg, args);
    },
  }) as Client;
  return {
    client,
    arm(run) {
      before = run;
    },
    get fired() {
      return fired;
    },
  };
}

/** A live executor and an order-poller on the simulator, driven pass by pass ({@linkcode liveRig}). */
export interface LiveRig {
  executor: Executor;
  poller: OrderPoller;
  /** Every attempt, oldest first. */
  rows(): Promise<AttemptRow[]>;
  /** One executor pass, then one poller pass. */
  pass(): Promise<void>;
  /**
   * A paper entry of `market` at `price`, passes until its live buy is final; returns the volume
   * it bought (above 0, or it throws).
   */
  enter(market: string, price: number): Promise<string>;
}

/** Whether a live buy is final with its fills (a market buy ends done, or cancel: §11.6). */
export function buySettled(a?: AttemptRow): boolean {
  return a?.state === "filled" || a?.state === "cancelled";
}

/**
 * A started live executor (`sql` may be a wrapped client, e.g. {@linkcode holdingBack}'s) and an
 * order-poller reading the real database, on `h`'s simulator (or `rest`).
 */
export async function liveRig(
  db: { sql: Client },
  h: SimHandle,
  o: { sql?: Client; rest?: UpbitRest; executor?: Partial<ExecutorOptions> } = {},
): Promise<LiveRig> {
  const rest = o.rest ?? h.rest;
  const executor = liveExecutor(o.sql ?? db.sql, rest, executorConfig(h.sim, "live"), h.log, {
    settings: { maxOrdersPerMin: 600 },
    unknownSettleMs: 0,
    ...o.executor,
  });
  await executor.start();
  const poller = new OrderPoller({ sql: db.sql, rest, maxPolls: 50, log: h.log });
  const rows = () => db.sql<AttemptRow[]>`select * from upbit_order_attempts order by id`;
  const pass = async () => {
    await executor.runOnce();
    await poller.pollOnce();
  };
  return {
    executor,
    poller,
    rows,
    pass,
    async enter(market, price) {
      const before = (await rows()).length;
      await paperEnter(db.sql, market, price);
      for (let i = 0; i < 60 && !buySettled((await rows())[before]); i++) await pass();
      const bought = (await rows())[before]?.executed_volume ?? "0";
      if (!(dec(bought) > 0n)) throw new Error(`the entry on ${market} bought nothing`);
      return bought;
    },
  };
}
