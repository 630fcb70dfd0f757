/**
 * The live position ledger (migration 003), its adjustments, `live_positions` as the account actor
 * writes it, and the closer's inputs. Fills come from real orders on the simulator wherever the
 * exchange's numbers matter; attempt rows are written the way the executor and poller store them.
 */
import assert from "node:assert/strict";
import { closerInputs, readAccountBalances } from "../lib/execution/closer_inputs.ts";
import { type CloseDecision, decideCloses } from "../lib/execution/position_closer.ts";
import {
  LedgerAdjustmentError,
  ledgerPosition,
  ledgerPositions,
  recordDust,
  recordGone,
  recordOversold,
  recordWriteOffs,
} from "../lib/execution/position_ledger.ts";
import { realisedLossSince } from "../lib/execution/risk_gate.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import { migrate, readMigrations } from "../lib/db/migrate.ts";
import { AccountSync } from "../lib/pipeline/account.ts";
import type { Client, Sql } from "../lib/db/connect.ts";
import { type Dec, dec, divTrunc, formatDec, mul, truncDec, ZERO } from "../lib/decimal.ts";
import type { Order } from "../lib/upbit/schemas.ts";
import { type OrderRequest, UpbitRest } from "../lib/upbit/rest.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";
import { createRng } from "../sim/_rng.ts";
import { dbTest } from "./_db.ts";

const BTC = "KRW-BTC";
const ETH = "KRW-ETH";

let nextId = 0;

/** An attempt row as the executor writes it and the poller completes it. */
interface AttemptFill {
  symbol: string;
  side: "bid" | "ask";
  mode?: "shadow" | "test" | "live";
  status?: string;
  finalState?: "done" | "cancel" | null;
  executedVolume?: string | null;
  paidFee?: string | null;
  avgPrice?: string | null;
  ts?: Date;
}

/**
 * Writes one attempt row. The only place these tests spell the attempt's columns (the order
 * state machine renames status; adapt here).
 */
async function insertAttemptRow(sql: Sql, f: AttemptFill): Promise<number> {
  const id = ++nextId;
  const [row] = await sql<{ id: string }[]>`
    insert into upbit_order_attempts (ts, symbol, action, mode, side, ord_type, identifier, status,
      final_state, executed_volume, paid_fee, avg_price)
    values (${f.ts ?? new Date()}, ${f.symbol}, ${f.side === "bid" ? "ENTER_LONG" : "EXIT_LONG"},
      ${f.mode ?? "live"}, ${f.side}, ${f.side === "bid" ? "price" : "market"},
      ${`ledger-test-${crypto.randomUUID()}-${id}`}, ${f.status ?? "done"},
      ${f.finalState === undefined ? "done" : f.finalState}, ${f.executedVolume ?? null},
      ${f.paidFee ?? null}, ${f.avgPrice ?? null})
    returning id`;
  return Number(row!.id);
}

/** Average fill price of a final order, exact to 8 decimals (truncated). */
function avgPriceOf(order: Order): string | null {
  const volume = dec(order.executed_volume);
  if (volume === ZERO || !order.trades) return null;
  const funds = order.trades.reduce((sum, t) => sum + dec(t.funds), ZERO);
  return formatDec(divTrunc(funds, volume, 8));
}

/** Places `body` on the simulator and returns the order once final (done or cancel). */
async function fill(rest: UpbitRest, body: OrderRequest): Promise<Order> {
  const placed = await rest.postOrder(body);
  assert.equal(placed.kind, "accepted", JSON.stringify(placed));
  if (placed.kind !== "accepted") throw new Error("unreachable");
  for (let i = 0; i < 50; i++) {
    const { data } = await rest.getOrder({ uuid: placed.order.uuid });
    if (data.state === "done" || data.state === "cancel") return data;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`order ${placed.order.uuid} did not finish`);
}

/** A market buy for `krw` won, filled. */
function marketBuy(rest: UpbitRest, market: string, krw: string, identifier: string) {
  return fill(rest, { market, side: "bid", ord_type: "price", price: krw, identifier });
}

/** A market sell of `volume`, filled. */
function marketSell(rest: UpbitRest, market: string, volume: string, identifier: string) {
  return fill(rest, { market, side: "ask", ord_type: "market", volume, identifier });
}

/** Records a final simulator order as upbot's live attempt. */
async function recordOrder(sql: Sql, order: Order): Promise<void> {
  await insertAttemptRow(sql, {
    symbol: order.market,
    side: order.side,
    finalState: order.state as "done" | "cancel",
    executedVolume: order.executed_volume,
    paidFee: order.paid_fee,
    avgPrice: avgPriceOf(order),
  });
}

async function withSim(
  fn: (sim: Simulator, rest: UpbitRest) => Promise<void>,
): Promise<void> {
  const restore = setLogSink(() => {});
  const sim = await startSimulator({ rate: 0, seed: 11, markets: [BTC, ETH] });
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
  });
  try {
    await fn(sim, rest);
  } finally {
    rest.close();
    await sim.close();
    restore();
  }
}

async function coinBalance(rest: UpbitRest, currency: string): Promise<string> {
  const { data } = await rest.getAccounts();
  return data.find((a) => a.currency === currency)?.balance ?? "0";
}

dbTest("ledger: the simulator's fills; the owner's own coins never enter it", async ({ sql }) => {
  await withSim(async (_sim, rest) => {
    // The owner's coins, bought by hand: not an attempt of upbot's.
    await marketBuy(rest, BTC, "30000", "owner-1");
    const owner = await coinBalance(rest, "BTC");
    assert.ok(dec(owner) > ZERO);
    assert.deepEqual(await ledgerPositions(sql), []);

    const buy = await marketBuy(rest, BTC, "20000", "upbot-buy");
    await recordOrder(sql, buy);
    // A partial sell: a third of what upbot bought, truncated to 8 decimals.
    const third = formatDec(divTrunc(dec(buy.executed_volume), dec("3"), 8));
    const sell = await marketSell(rest, BTC, third, "upbot-sell");
    await recordOrder(sql, sell);

    const p = (await ledgerPosition(sql, BTC))!;
    assert.equal(p.bought, formatDec(dec(buy.executed_volume)));
    assert.equal(p.sold, third);
    assert.equal(p.openVolume, formatDec(dec(buy.executed_volume) - dec(third)));
    // What upbot still owns is exactly what the exchange holds beyond the owner's coins.
    assert.equal(p.openVolume, formatDec(dec(await coinBalance(rest, "BTC")) - dec(owner)));
    assert.equal(p.fees, formatDec(dec(buy.paid_fee) + dec(sell.paid_fee)));
    assert.equal(p.gone, "0");
    assert.equal(p.dust, "0");
    assert.ok(p.avgEntryPrice !== null && dec(p.avgEntryPrice) > ZERO);
    assert.equal(await ledgerPosition(sql, ETH), null);
  });
});

dbTest("ledger: open, cancelled and prevented orders count what they executed", async ({ sql }) => {
  // A market buy that ends `cancel` with its dust (§4.5) still bought.
  await insertAttemptRow(sql, {
    symbol: BTC,
    side: "bid",
    finalState: "cancel",
    executedVolume: "0.00003736",
    paidFee: "2.99989592",
    avgPrice: "160594000",
  });
  // A sell still open, partly executed (the poller updates executed_volume while it is open).
  await insertAttemptRow(sql, {
    symbol: BTC,
    side: "ask",
    status: "submitted",
    finalState: null,
    executedVolume: "0.00001",
    paidFee: "0.8",
    avgPrice: "160000000",
  });
  // A sell SMP-prevented in part: final `cancel` with some volume executed.
  await insertAttemptRow(sql, {
    symbol: BTC,
    side: "ask",
    finalState: "cancel",
    executedVolume: "0.00000736",
    paidFee: "0.5",
    avgPrice: "160000000",
  });
  // Never counted: a refused order, a shadow row, a test-mode order, a pending row.
  await insertAttemptRow(sql, { symbol: BTC, side: "bid", status: "error", finalState: null });
  await insertAttemptRow(sql, {
    symbol: BTC,
    side: "bid",
    mode: "shadow",
    status: "logged",
    finalState: null,
  });
  await insertAttemptRow(sql, {
    symbol: BTC,
    side: "bid",
    mode: "test",
    status: "test_ok",
    finalState: null,
    executedVolume: "1",
  });
  await insertAttemptRow(sql, { symbol: BTC, side: "ask", status: "pending", finalState: null });

  const [p] = await ledgerPositions(sql);
  assert.equal(p!.bought, "0.00003736");
  assert.equal(p!.sold, "0.00001736");
  assert.equal(p!.openVolume, "0.00002");
  assert.equal(p!.fees, "4.29989592");
  // cost = funds + fee of the buy: 0.00003736 x 160,594,000 + 2.99989592
  assert.equal(p!.cost, "6002.79173592");
});

dbTest("ledger: average entry and realised pnl across round trips", async ({ sql }) => {
  const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
  const fill = (side: "bid" | "ask", volume: string, price: string, fee: string, s: number) =>
    insertAttemptRow(sql, {
      symbol: ETH,
      side,
      executedVolume: volume,
      avgPrice: price,
      paidFee: fee,
      ts: t(s),
    });
  await fill("bid", "1", "100", "0.05", 1);
  await fill("ask", "1", "110", "0.055", 2);
  await fill("bid", "2", "200", "0.2", 3);
  await fill("ask", "0.5", "220", "0.055", 4);
  const p = (await ledgerPosition(sql, ETH))!;
  assert.equal(p.openVolume, "1.5");
  // The first round trip is closed: the entry price is the second buy's, fee included.
  assert.equal(p.avgEntryPrice, "200.1");
  // (110 - 0.055 - 100.05) + (0.5 x 220 - 0.055 - 0.5 x 200.1) = 9.895 + 9.895
  assert.equal(p.realisedPnl, "19.79");
  assert.equal(p.cost, "500.25");
  assert.equal(p.proceeds, "219.89");
});

dbTest(
  "ledger: a sale beyond what was bought is recorded as oversold once, and the next buy is whole",
  async ({ sql }) => {
    await insertAttemptRow(sql, {
      symbol: BTC,
      side: "bid",
      executedVolume: "0.001",
      paidFee: "50",
      avgPrice: "100000000",
    });
    // Sold twice (a race sold the same volume again: the second came from the owner's coins).
    for (let i = 0; i < 2; i++) {
      await insertAttemptRow(sql, {
        symbol: BTC,
        side: "ask",
        executedVolume: "0.001",
        paidFee: "50",
        avgPrice: "100000000",
      });
    }
    assert.equal((await ledgerPosition(sql, BTC))!.openVolume, "-0.001");
    const lossBefore = await realisedLossSince(sql, new Date(0));
    // Not while an order of the market is unsettled: it may still bring fills.
    const inFlight = await insertAttemptRow(sql, { symbol: BTC, side: "bid", status: "pending" });
    const also: string[] = [];
    const record = () =>
      recordOversold(sql, BTC, async (tx, volume) => {
        await tx`select 1`;
        also.push(volume);
      });
    assert.equal(await record(), null);
    await sql`update upbit_order_attempts set state = 'failed', reason = 'test'
      where id = ${inFlight}`;
    assert.equal(await record(), "0.001");
    assert.deepEqual(also, ["0.001"], "the caller's writes run once, with the volume");
    let p = (await ledgerPosition(sql, BTC))!;
    assert.equal(p.openVolume, "0");
    assert.equal(p.oversold, "0.001");
    assert.equal(await record(), null, "recorded once");
    // Bringing volume back is no loss of upbot's.
    assert.equal(await realisedLossSince(sql, new Date(0)), lossBefore);
    // The next buy is whole: upbot owns and will sell all of it.
    await insertAttemptRow(sql, {
      symbol: BTC,
      side: "bid",
      executedVolume: "0.002",
      paidFee: "100",
      avgPrice: "100000000",
    });
    p = (await ledgerPosition(sql, BTC))!;
    assert.equal(p.openVolume, "0.002");
    assert.equal(p.avgEntryPrice, "100050000");
    // The caller's failure leaves nothing recorded.
    await sql`delete from position_adjustments`;
    await sql`delete from upbit_order_attempts where side = 'bid' and executed_volume = 0.002`;
    await assert.rejects(
      recordOversold(sql, BTC, () => Promise.reject(new Error("the alarm failed"))),
      /the alarm failed/,
    );
    assert.equal((await ledgerPosition(sql, BTC))!.openVolume, "-0.001");
  },
);

dbTest(
  "ledger: gone and dust close volume without a sale, never more than is open",
  async ({ sql }) => {
    await insertAttemptRow(sql, {
      symbol: BTC,
      side: "bid",
      executedVolume: "0.002",
      paidFee: "100",
      avgPrice: "100000000",
    });
    await recordGone(sql, BTC, "0.0015", "sold by hand");
    await recordDust(sql, BTC, "0.00004", "4000");
    let p = (await ledgerPosition(sql, BTC))!;
    assert.equal(p.gone, "0.0015");
    assert.equal(p.dust, "0.00004");
    assert.equal(p.openVolume, "0.00046");

    const refused: [() => Promise<unknown>, string][] = [
      [
        () => recordGone(sql, BTC, "0.00047", "too much"),
        "Cannot record gone of 0.00047 for KRW-BTC as it exceeds the ledger's open volume 0.00046",
      ],
      [
        () => recordDust(sql, ETH, "0.1", "10"),
        "Cannot record dust of 0.1 for KRW-ETH as it exceeds the ledger's open volume 0",
      ],
      [
        () => recordGone(sql, BTC, "0", "nothing"),
        "Cannot record gone for KRW-BTC as the volume must be positive: current value is 0",
      ],
      [
        () => recordDust(sql, BTC, "0.0001", "-1"),
        "Cannot record dust for KRW-BTC as the value must not be negative: current value is -1",
      ],
    ];
    for (const [record, message] of refused) {
      await assert.rejects(record(), new LedgerAdjustmentError(message));
    }
    await recordGone(sql, BTC, "0.00046", "the rest");
    p = (await ledgerPosition(sql, BTC))!;
    assert.equal(p.openVolume, "0");
    assert.equal(p.avgEntryPrice, null);
    const [dust] =
      await sql`select value_krw::text, reason from position_adjustments where kind = 'dust'`;
    assert.deepEqual({ ...dust }, { value_krw: "4000", reason: "below the minimum order total" });
  },
);

dbTest(
  "live_positions: upbot's bought volume is LONG, the owner's coins stay FLAT",
  async ({ sql }) => {
    await withSim(async (_sim, rest) => {
      // The owner holds ETH and BTC bought by hand; upbot bought BTC.
      await marketBuy(rest, ETH, "40000", "o-eth");
      await marketBuy(rest, BTC, "40000", "o-btc");
      const buy = await marketBuy(rest, BTC, "20000", "u-btc");
      await recordOrder(sql, buy);
      // A market upbot still holds but no longer trades (left the configuration).
      await insertAttemptRow(sql, {
        symbol: "KRW-XRP",
        side: "bid",
        executedVolume: "10",
        avgPrice: "3000",
        paidFee: "15",
      });
      const sync = new AccountSync({
        sql: sql,
        rest,
        markets: [BTC, ETH],
        log: createLogger("account"),
      });
      const positions = await sync.pollOnce();
      assert.deepEqual(positions.map((p) => p.symbol), ["KRW-BTC", "KRW-ETH", "KRW-XRP"]);

      const rows = await sql`
      select symbol, position_status, owned_volume::text, entry_price::text, base_balance::text
      from live_positions order by symbol`;
      const by = Object.fromEntries(rows.map((r) => [r.symbol, r]));
      assert.equal(by[BTC].position_status, "LONG");
      assert.equal(by[BTC].owned_volume, formatDec(dec(buy.executed_volume)));
      // The balance column is the exchange's: the owner's coins and upbot's together.
      assert.equal(dec(by[BTC].base_balance), dec(await coinBalance(rest, "BTC")));
      assert.ok(dec(by[BTC].base_balance) > dec(by[BTC].owned_volume));
      assert.equal(by[ETH].position_status, "FLAT");
      assert.equal(dec(by[ETH].owned_volume), ZERO);
      assert.equal(by[ETH].entry_price, null);
      assert.ok(dec(by[ETH].base_balance) > ZERO);
      assert.equal(by["KRW-XRP"].position_status, "LONG");
      assert.equal(dec(by["KRW-XRP"].owned_volume), dec("10"));
      assert.equal(dec(by["KRW-XRP"].entry_price), dec("3001.5"));

      // Once the ledger is closed, the next poll shows it FLAT (the market is still written).
      await recordGone(sql, "KRW-XRP", "10", "test");
      await sync.pollOnce();
      const [xrp] = await sql`select position_status from live_positions where symbol = 'KRW-XRP'`;
      assert.equal(xrp!.position_status, "FLAT");
    });
  },
);

dbTest(
  "migration 003: a LONG derived from the owner's balances becomes FLAT, the ledger's LONG",
  async ({ sql }) => {
    const all = await readMigrations();
    await migrate(sql, all.filter((m) => m.version < 3));
    await insertAttemptRow(sql, {
      symbol: BTC,
      side: "bid",
      executedVolume: "0.001",
      avgPrice: "100000000",
      paidFee: "50",
    });
    for (const symbol of [BTC, ETH]) {
      await sql`
        insert into live_positions (symbol, ts, krw_balance, base_balance, avg_buy_price,
          position_status)
        values (${symbol}, now(), 1000000, 2, 3000000, 'LONG')`;
    }
    await migrate(sql);
    const rows = await sql`
      select symbol, position_status, owned_volume::text from live_positions order by symbol`;
    assert.deepEqual(rows.map((r) => ({ ...r })), [
      { symbol: BTC, position_status: "LONG", owned_volume: "0.001" },
      { symbol: ETH, position_status: "FLAT", owned_volume: "0" },
    ]);
  },
  { migrated: false },
);

async function insertPaper(sql: Sql, symbol: string, exit: boolean): Promise<void> {
  const [entry] = await sql<{ id: string }[]>`
    insert into paper_trades (symbol, action, policy_profile, entry_ts, entry_price, qty, fee)
    values (${symbol}, 'ENTER_LONG', 'default', now(), 100, 1, 0.05) returning id`;
  if (!exit) return;
  await sql`
    insert into paper_trades (symbol, action, policy_profile, entry_id, entry_ts, entry_price,
      exit_ts, exit_price, qty, fee, pnl, exit_reason)
    values (${symbol}, 'EXIT_LONG', 'default', ${entry!.id}, now(), 100, now(), 101, 1, 0.05, 0.9,
      'TP')`;
}

async function insertClose(sql: Sql, symbol: string, secondsAgo: number, close: string) {
  await sql`
    insert into market_1s (symbol, ts, open, high, low, close, volume, quote_volume, trade_count,
      buy_volume, sell_volume, is_final)
    values (${symbol}, ${new Date(Date.now() - secondsAgo * 1000)}, ${close}, ${close}, ${close},
      ${close}, 1, ${close}, 1, 1, 0, true)`;
}

dbTest(
  "closerInputs: ledger, paper book, unsettled orders, last close, balances",
  async ({ sql }) => {
    const buy = (symbol: string, volume: string) =>
      insertAttemptRow(sql, {
        symbol,
        side: "bid",
        executedVolume: volume,
        avgPrice: "1000",
        paidFee: "1",
      });
    await buy(BTC, "0.002"); // paper flat, nothing unsettled
    await buy(ETH, "0.5"); // paper still open; a sell pending
    await buy("KRW-XRP", "100"); // a buy of unknown outcome; no bars
    await buy("KRW-SOL", "1");
    await insertAttemptRow(sql, {
      symbol: "KRW-SOL",
      side: "ask",
      executedVolume: "1",
      avgPrice: "1000",
    });
    await insertPaper(sql, BTC, true);
    await insertPaper(sql, ETH, true);
    await insertPaper(sql, ETH, false);
    await insertAttemptRow(sql, { symbol: ETH, side: "ask", status: "pending", finalState: null });
    await insertAttemptRow(sql, {
      symbol: "KRW-XRP",
      side: "bid",
      status: "unknown",
      finalState: null,
    });
    await insertAttemptRow(sql, {
      symbol: BTC,
      side: "ask",
      status: "submitted",
      finalState: "done",
    });
    await insertClose(sql, BTC, 5, "99000000");
    await insertClose(sql, BTC, 1, "100000000");
    await insertClose(sql, ETH, 1, "4000000");

    let reads = 0;
    const balances = () => {
      reads++;
      return Promise.resolve({
        BTC: { balance: "0.0025", locked: "0" },
        ETH: { balance: "0.5", locked: "0" },
        KRW: { balance: "1000000", locked: "0" },
      });
    };
    const shadow = await closerInputs(sql, "shadow", balances);
    assert.equal(reads, 0, "shadow mode makes no API call");
    assert.ok(shadow.markets.every((m) => m.freeBalance === null && m.lockedBalance === null));

    const live = await closerInputs(sql, "live", balances, { flatten: true });
    assert.equal(reads, 1);
    assert.equal(live.flatten, true);
    assert.equal(live.minOrderKrw, "5000");
    assert.deepEqual(live.markets, [
      {
        market: BTC,
        openVolume: "0.002",
        paperFlat: true,
        sellUnsettled: false,
        buyUnsettled: false,
        freeBalance: "0.0025",
        lockedBalance: "0",
        lastPrice: "100000000",
      },
      {
        market: ETH,
        openVolume: "0.5",
        paperFlat: false,
        sellUnsettled: true,
        buyUnsettled: false,
        freeBalance: "0.5",
        lockedBalance: "0",
        lastPrice: "4000000",
      },
      {
        market: "KRW-XRP",
        openVolume: "100",
        paperFlat: true,
        sellUnsettled: false,
        buyUnsettled: true,
        freeBalance: "0",
        lockedBalance: "0",
        lastPrice: null,
      },
    ]);
    assert.deepEqual(decideCloses(live), [
      { kind: "sell", market: BTC, volume: "0.002" },
      { kind: "hold", market: ETH, volume: "0.5", reason: "sell_unsettled" },
      { kind: "hold", market: "KRW-XRP", volume: "100", reason: "buy_unsettled" },
    ]);
  },
);

dbTest(
  "closerInputs: no balance request while every held market is paper-open or has a sell in flight",
  async ({ sql }) => {
    await insertAttemptRow(sql, { symbol: BTC, side: "bid", executedVolume: "0.002" });
    await insertPaper(sql, BTC, false); // the paper book still holds BTC
    await insertAttemptRow(sql, { symbol: ETH, side: "bid", executedVolume: "0.5" });
    await insertPaper(sql, ETH, true);
    await insertAttemptRow(sql, { symbol: ETH, side: "ask", status: "pending", finalState: null });
    let reads = 0;
    const balances = () => {
      reads++;
      const none = { balance: "0", locked: "0" };
      return Promise.resolve({ BTC: none, ETH: none, KRW: none });
    };
    const input = await closerInputs(sql, "live", balances);
    assert.equal(reads, 0, "no market is judged on its balance");
    assert.deepEqual(decideCloses(input).map((d) => d.kind === "hold" ? d.reason : d.kind), [
      "paper_open",
      "sell_unsettled",
    ]);
    // A flatten judges the paper-open market: now the balance is read (and BTC is gone).
    const flatten = await closerInputs(sql, "live", balances, { flatten: true });
    assert.equal(reads, 1);
    assert.deepEqual(decideCloses(flatten).map((d) => d.kind === "hold" ? d.reason : d.kind), [
      "gone",
      "sell_unsettled",
    ]);
    // The sell settles (rejected): ETH is judged too, in the same single read.
    await sql`update upbit_order_attempts set state = 'rejected'
      where symbol = ${ETH} and side = 'ask'`;
    const settled = await closerInputs(sql, "live", balances);
    assert.equal(reads, 2);
    assert.deepEqual(decideCloses(settled).map((d) => d.kind === "hold" ? d.reason : d.kind), [
      "paper_open",
      "gone",
    ]);
  },
);

/** Stores the simulator's current price of `market` as the last 1-second close. */
async function storeSimPrice(sql: Sql, rest: UpbitRest, market: string): Promise<void> {
  const { data } = await rest.getTicker({ markets: [market] });
  await insertClose(sql, market, 0, String(data[0]!.trade_price));
}

/**
 * Runs the closer against the simulator until it has nothing left to do, the way the executor
 * will: write-offs recorded, sells placed and their fills stored as upbot's live attempts.
 * Returns the decisions of each round (holds left out).
 */
async function closeOnSim(
  sql: Client,
  rest: UpbitRest,
  options: { flatten?: boolean } = {},
): Promise<CloseDecision[][]> {
  const log = createLogger("closer");
  const rounds: CloseDecision[][] = [];
  for (let round = 0; round < 5; round++) {
    const input = await closerInputs(sql, "live", () => readAccountBalances(rest), options);
    const decisions = decideCloses(input).filter((d) => d.kind !== "hold");
    if (decisions.length === 0) return rounds;
    rounds.push(decisions);
    await recordWriteOffs(sql, decisions, log);
    for (const d of decisions) {
      if (d.kind !== "sell") continue;
      const body: OrderRequest = {
        market: d.market,
        side: "ask",
        ord_type: "market",
        volume: d.volume,
        identifier: `close-${crypto.randomUUID()}`,
      };
      await recordOrder(sql, await fill(rest, body));
    }
  }
  throw new Error("the closer did not settle in 5 rounds");
}

dbTest(
  "closer on the simulator: the owner's pre-existing coins are never sold",
  async ({ sql }) => {
    await withSim(async (_sim, rest) => {
      await marketBuy(rest, BTC, "30000", "owner");
      const owner = await coinBalance(rest, "BTC");
      const buy = await marketBuy(rest, BTC, "20000", "upbot-entry");
      await recordOrder(sql, buy);
      await insertPaper(sql, BTC, true);
      await storeSimPrice(sql, rest, BTC);

      const rounds = await closeOnSim(sql, rest);
      assert.deepEqual(rounds, [[{
        kind: "sell",
        market: BTC,
        volume: formatDec(dec(buy.executed_volume)),
      }]]);
      assert.equal((await ledgerPosition(sql, BTC))!.openVolume, "0");
      assert.equal(await coinBalance(rest, "BTC"), owner);
    });
  },
);

dbTest(
  "closer on the simulator: coins sold by hand are recorded as gone, with an alarm",
  async ({ sql }) => {
    await withSim(async (_sim, rest) => {
      const buy = await marketBuy(rest, BTC, "30000", "upbot-entry");
      await recordOrder(sql, buy);
      await insertPaper(sql, BTC, true);
      await storeSimPrice(sql, rest, BTC);
      // The owner sells 40% of it by hand (not an order of upbot's).
      const byHand = formatDec(divTrunc(dec(buy.executed_volume) * 2n, dec("5"), 8));
      await marketSell(rest, BTC, byHand, "hand");

      const lines: string[] = [];
      const restore = setLogSink((line) => lines.push(line));
      let rounds: CloseDecision[][];
      try {
        rounds = await closeOnSim(sql, rest);
      } finally {
        restore();
      }
      const left = formatDec(dec(buy.executed_volume) - dec(byHand));
      assert.deepEqual(rounds, [[
        { kind: "gone", market: BTC, volume: byHand, freeBalance: left },
        { kind: "sell", market: BTC, volume: left },
      ]]);
      const p = (await ledgerPosition(sql, BTC))!;
      assert.deepEqual([p.sold, p.gone, p.openVolume], [left, byHand, "0"]);
      assert.equal(await coinBalance(rest, "BTC"), "0");
      assert.ok(
        lines.some((l) => l.includes(`Position KRW-BTC: ${byHand} no longer on the exchange`)),
        lines.join("\n"),
      );
    });
  },
);

dbTest(
  "closer on the simulator: a partly sold position's remainder is sold, or kept as dust",
  async ({ sql }) => {
    await withSim(async (_sim, rest) => {
      for (const [market, sellPart] of [[BTC, "0.5"], [ETH, "0.85"]] as const) {
        const buy = await marketBuy(rest, market, "20000", `entry-${market}`);
        await recordOrder(sql, buy);
        const part = formatDec(truncDec(mul(dec(buy.executed_volume), dec(sellPart)), 8));
        await recordOrder(
          sql,
          await marketSell(rest, market, part, `exit-${market}`),
        );
        // The paper book still holds both: nothing happens without a flatten.
        await insertPaper(sql, market, false);
        await storeSimPrice(sql, rest, market);
      }
      assert.deepEqual(await closeOnSim(sql, rest), []);

      const rounds = await closeOnSim(sql, rest, { flatten: true });
      assert.equal(rounds.length, 1);
      const [sell, dust] = rounds[0]!;
      assert.equal(sell!.kind, "sell");
      assert.equal(sell!.market, BTC);
      assert.equal(dust!.kind, "dust");
      assert.equal(dust!.market, ETH);
      assert.equal(await coinBalance(rest, "BTC"), "0");
      // The exchange keeps exactly the recorded dust; the ledger is flat.
      const eth = (await ledgerPosition(sql, ETH))!;
      assert.equal(eth.openVolume, "0");
      assert.equal(eth.dust, await coinBalance(rest, "ETH"));
      assert.ok(dec((dust as { valueKrw: string }).valueKrw) < dec("5000"));
    });
  },
);

dbTest(
  "ledger: random fills and write-offs sum exactly (8 decimals, no float)",
  async ({ sql }) => {
    for (const seed of [1, 2, 3]) {
      await sql`delete from position_adjustments`;
      await sql`delete from upbit_order_attempts`;
      const rng = createRng(seed);
      const want = new Map<string, Record<string, Dec>>();
      const sums = (m: string) => {
        let s = want.get(m);
        if (!s) {
          s = {
            bought: ZERO,
            sold: ZERO,
            gone: ZERO,
            dust: ZERO,
            cost: ZERO,
            proceeds: ZERO,
            fees: ZERO,
          };
          want.set(m, s);
        }
        return s;
      };
      const open = (s: Record<string, Dec>) => s.bought! - s.sold! - s.gone! - s.dust!;
      const units = (n: number) => BigInt(n) * 10n ** 12n; // n x 10^-8
      for (let i = 0; i < 60; i++) {
        const market = rng.chance(0.5) ? BTC : ETH;
        const s = sums(market);
        const price = dec(String(rng.int(1, 200_000_000)));
        const op = rng.int(0, 9);
        if (op <= 3 || open(s) === ZERO) {
          const volume = units(rng.int(1, 1_000_000_000));
          const funds = mul(volume, price);
          const fee = truncDec(mul(funds, dec("0.0005")), 8);
          const state = rng.chance(0.3) ? "cancel" : rng.chance(0.2) ? null : "done";
          await insertAttemptRow(sql, {
            symbol: market,
            side: "bid",
            status: state === null ? "submitted" : "done",
            finalState: state,
            executedVolume: formatDec(volume),
            paidFee: formatDec(fee),
            avgPrice: formatDec(price),
          });
          s.bought! += volume;
          s.cost! += funds + fee;
          s.fees! += fee;
        } else if (op <= 7) {
          const volume = open(s) * BigInt(rng.int(1, 100)) / 100n / 10n ** 12n * 10n ** 12n;
          if (volume === ZERO) continue;
          const funds = mul(volume, price);
          const fee = truncDec(mul(funds, dec("0.0005")), 8);
          await insertAttemptRow(sql, {
            symbol: market,
            side: "ask",
            executedVolume: formatDec(volume),
            paidFee: formatDec(fee),
            avgPrice: formatDec(price),
          });
          s.sold! += volume;
          s.proceeds! += funds - fee;
          s.fees! += fee;
        } else {
          const volume = open(s) * BigInt(rng.int(1, 100)) / 100n;
          if (volume === ZERO) continue;
          if (op === 8) {
            await recordGone(sql, market, formatDec(volume), "random");
            s.gone! += volume;
          } else {
            await recordDust(sql, market, formatDec(volume), "1");
            s.dust! += volume;
          }
        }
        // Rows that never count: not live, or nothing executed.
        if (rng.chance(0.2)) {
          await insertAttemptRow(sql, {
            symbol: market,
            side: "bid",
            mode: rng.chance(0.5) ? "shadow" : "test",
            status: "logged",
            finalState: null,
            executedVolume: rng.chance(0.5) ? "5" : null,
          });
        }
      }
      for (const p of await ledgerPositions(sql)) {
        const s = want.get(p.symbol)!;
        assert.deepEqual(
          [p.bought, p.sold, p.gone, p.dust, p.openVolume, p.cost, p.proceeds, p.fees],
          [s.bought, s.sold, s.gone, s.dust, open(s), s.cost, s.proceeds, s.fees].map((v) =>
            formatDec(v!)
          ),
          `seed ${seed} ${p.symbol}`,
        );
        if (open(s) === ZERO) assert.equal(p.realisedPnl, formatDec(s.proceeds! - s.cost!));
      }
    }
  },
);
