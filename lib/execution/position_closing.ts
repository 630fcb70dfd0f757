/**
 * @module Closing live positions from the ledger (issue #9, "positions are obligations"): after
 * each executor pass in live mode, the closer's decisions (`position_closer.ts`, from
 * `closer_inputs.ts`) are carried out: reduce-only market sells sent through the executor's state
 * machine and identifiers (`paper-{inst}-close-{n}`), `gone` and `dust` recorded in the ledger
 * with their alarms, and a pending flatten completed once the ledger is flat.
 */
import { completeFlatten, haltEntries, pendingFlatten } from "../control/trading_state.ts";
import type { Client } from "../db/connect.ts";
import { dec, ZERO } from "../decimal.ts";
import type { Logger } from "../log.ts";
import { activeAlarms, clearAlarm, raiseAlarm } from "../store/alarms.ts";
import { type AttemptRow, insertAttempt } from "../store/order_attempts.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import {
  closerInputs,
  delistingMarkets,
  LAST_CLOSE_MAX_AGE_SEC,
  paperOpenMarkets,
  readAccountBalances,
} from "./closer_inputs.ts";
import { closeIdentifierFor } from "./identifiers.ts";
import { decideCloses } from "./position_closer.ts";
import { ledgerPositions, recordOversold, recordWriteOffs } from "./position_ledger.ts";
import { readTickers } from "./risk_gate.ts";

/**
 * Alarms the closer raises once while the condition lasts and clears itself: a close stopped by
 * self-match prevention, coins of a position locked in the owner's orders.
 */
const ONCE_ALARMS = ["close_prevented", "position_locked", "position_delisting"] as const;
type OnceAlarm = typeof ONCE_ALARMS[number];

/** A market's close backoff after refused sells: whether to wait, and why they were refused. */
interface CloseBackoff {
  /** The backoff after the last refused sell has not passed yet. */
  wait: boolean;
  /** Self-match prevention stopped the last sells (the owner's own order is in the way). */
  prevented: boolean;
}

/** What the position closing needs from the executor. */
export interface PositionClosingOptions {
  sql: Client;
  rest: UpbitRest;
  log: Logger;
  /** This installation's id. */
  installation: () => string;
  /** The last paper trade id the executor has handled (its durable cursor). */
  handledThrough: () => number;
  /** Whether the order rate cap allows one more order now. */
  underCap: () => Promise<boolean>;
  /** Sends a `pending` attempt through the executor's gate and records the outcome. */
  send: (attempt: AttemptRow) => Promise<"capped" | void>;
  /** Backoff before the next close after `refusals` refused sells in a row, ms. */
  retryDelayMs: (refusals: number) => number;
  now: () => number;
  /**
   * The configured markets (`MARKETS`): a ledger market outside them is closed as if its paper
   * book were flat (no paper exit will come). @default every market
   */
  markets?: readonly string[];
}

/** Carries out the position closer's decisions in live mode. */
export class PositionClosing {
  #options: PositionClosingOptions;
  /** Markets outside `MARKETS` already named in a warning (once per market per process). */
  #unconfiguredLogged = new Set<string>();
  /**
   * Markets with an active alarm of each code the closer raises once and clears itself
   * (`close_prevented`, `position_locked`); null until read from the database.
   */
  #alarmed: Map<string, Set<string>> | null = null;

  constructor(options: PositionClosingOptions) {
    this.#options = options;
  }

  /**
   * The ledger says upbot sold more of `market` than it bought (`openVolume` below zero): a sale
   * went beyond it, from the owner's coins. Recorded as oversold (the ledger back at zero, so the
   * next buy is not netted against it, silently left unsold), said as an alarm, and the market's
   * entries halted until a person has looked. Waits while an order of the market is unsettled.
   */
  async #recordOversold(market: string, openVolume: string): Promise<void> {
    const said = (volume: string) =>
      `The ledger of ${market} was ${openVolume}: upbot sold ${volume} more than it bought (the owner's coins); recorded as oversold, entries on ${market} halted, check the order history`;
    const volume = await recordOversold(this.#options.sql, market, async (tx, volume) => {
      await raiseAlarm(tx, {
        code: "ledger_oversold",
        market,
        message: said(volume),
        details: { volume },
      });
      await haltEntries(tx, { scope: market, reason: said(volume), by: "closer" });
    });
    if (volume !== null) this.#options.log.error(said(volume), { market, volume });
  }

  /**
   * Live mode, after the other passes: every market the ledger holds while the paper book is flat
   * (or a flatten is pending) and no order of it is unsettled gets a reduce-only market sell of
   * min(open volume, free balance); what the exchange no longer holds, free or locked, is
   * recorded as gone (with an alarm), what is below the minimum total as dust; what the owner's
   * orders lock is held (with an alarm). Returns true when work remains.
   */
  async closeOnce(): Promise<boolean> {
    const sql = this.#options.sql;
    const flatten = await pendingFlatten(sql);
    const ledger = await ledgerPositions(sql);
    for (const p of ledger) {
      if (dec(p.openVolume) < ZERO) await this.#recordOversold(p.symbol, p.openVolume);
    }
    const held = ledger.filter((p) => dec(p.openVolume) > ZERO);
    // A position closed (sold, or written off) is no longer blocked by anything.
    for (const code of ONCE_ALARMS) {
      await this.#clearAlarms(code, (m) => !held.some((p) => p.symbol === m));
    }
    if (held.length === 0) {
      if (flatten) await this.#completeFlatten(flatten);
      return false;
    }
    const configured = this.#options.markets;
    for (const p of held) {
      if (configured === undefined || configured.includes(p.symbol)) continue;
      if (this.#unconfiguredLogged.has(p.symbol)) continue;
      this.#unconfiguredLogged.add(p.symbol);
      this.#options.log.warn(
        `Close ${p.symbol}: not in MARKETS, so no paper exit will come; closing the ${p.openVolume} the ledger holds`,
        { market: p.symbol, volume: p.openVolume },
      );
    }
    // A market Upbit ends trading on is closed now, whatever the paper book (paperOpenMarkets
    // leaves it out): said once.
    const delisting = await delistingMarkets(sql, held.map((p) => p.symbol));
    for (const [market, date] of delisting) {
      await this.#raiseOnce(
        "position_delisting",
        market,
        `Upbit ends trading of ${market} on ${date}: upbot closes its live position now rather than wait for the paper exit`,
      );
    }
    // While the paper book holds every market the ledger holds, there is nothing to close: spare
    // the balance request.
    const paperOpen = await paperOpenMarkets(sql, configured);
    if (!flatten && held.every((p) => paperOpen.has(p.symbol))) return false;
    // The waits first: a market that waits this round is held whatever its balance, so when every
    // market waits the balances are not asked for (each request spends the `default` group's
    // share the risk gate needs).
    const awaitingExit = await marketsAwaitingExit(sql, this.#options.handledThrough());
    const backoffs = new Map<string, CloseBackoff>();
    for (const p of held) backoffs.set(p.symbol, await this.#closeBackingOff(p.symbol));
    const waiting = new Set(
      held.map((p) => p.symbol).filter((m) => awaitingExit.has(m) || backoffs.get(m)!.wait),
    );
    const input = await closerInputs(sql, "live", () => readAccountBalances(this.#options.rest), {
      flatten: flatten !== null,
      waiting,
      ...(configured ? { markets: configured } : {}),
    });
    // Read again after the paper book: an exit the evaluator wrote between the two reads makes
    // its market paper-flat, and it is the executor's to send, not a close.
    for (const m of await marketsAwaitingExit(sql, this.#options.handledThrough())) waiting.add(m);
    if (input.markets.length === 0) {
      if (flatten) await this.#completeFlatten(flatten);
      return false;
    }
    const missingPrices = input.markets.filter((m) => m.lastPrice === null).map((m) => m.market);
    const tickers = missingPrices.length > 0
      ? await this.#lastPrices(missingPrices)
      : new Map<string, string>();
    const markets = [];
    const prevented = new Set<string>();
    for (const m of input.markets) {
      // A market the ledger gained since `held` was read has no backoff read: none applies yet.
      const backoff = backoffs.get(m.market) ?? { wait: false, prevented: false };
      if (backoff.prevented) {
        prevented.add(m.market);
        if (backoff.wait) {
          await this.#raiseOnce(
            "close_prevented",
            m.market,
            `Close of ${m.market} blocked: the owner's own order on Upbit meets upbot's sell (self-match prevention); cancel or move it, upbot tries again with backoff`,
          );
        }
      }
      // A buy still filling, a paper exit not handled yet, or a sell refused a moment ago: the
      // ledger is about to change, or Upbit needs time (capped backoff between closes).
      const wait = m.buyUnsettled || waiting.has(m.market);
      markets.push({
        ...m,
        sellUnsettled: m.sellUnsettled || wait,
        lastPrice: m.lastPrice ?? tickers.get(m.market) ?? null,
      });
    }
    await this.#clearAlarms(
      "close_prevented",
      (m) => input.markets.some((x) => x.market === m) && !prevented.has(m),
    );
    let decisions = decideCloses({ ...input, markets });
    // Dust is written off for good, so a market about to be is judged on its best bid too (what a
    // market sell meets): dust only when every price known says so, not on one bar of a wick or
    // a ticker's last trade. The book is read only for those markets; unread, none is written off
    // this pass.
    const dust = decisions.filter((d) => d.kind === "dust").map((d) => d.market);
    if (dust.length > 0) {
      const bids = await this.#bestBids(dust);
      const priced = markets.map((m) => {
        const bid = bids?.get(m.market);
        return bid !== undefined && (m.lastPrice === null || dec(bid) > dec(m.lastPrice))
          ? { ...m, lastPrice: bid }
          : m;
      });
      decisions = decideCloses({ ...input, markets: priced })
        .filter((d) => !(bids === null && d.kind === "dust"));
    }
    // Coins of upbot's position locked in the owner's orders: held, never written off; the owner
    // must cancel (or let fill) those orders for upbot to sell what it bought.
    const locked = decisions.filter((d) => d.kind === "hold" && d.reason === "owner_locked");
    for (const d of locked) {
      await this.#raiseOnce(
        "position_locked",
        d.market,
        `Live position of ${d.market}: ${d.volume} bought by upbot is locked in the owner's own orders on Upbit; held (not written off) until those orders are cancelled or filled`,
      );
    }
    await this.#clearAlarms(
      "position_locked",
      (m) => input.markets.some((x) => x.market === m) && !locked.some((d) => d.market === m),
    );
    // Write-offs first (they are what the ledger no longer owes), each with its log line; a gone
    // volume also raises the alarm people see in the status.
    await recordWriteOffs(sql, decisions, this.#options.log);
    for (const d of decisions) {
      if (d.kind !== "gone") continue;
      await raiseAlarm(sql, {
        code: "position_gone",
        market: d.market,
        message:
          `Live position of ${d.market}: ${d.volume} bought by upbot is not on the exchange (free balance ${d.freeBalance}${
            d.lockedBalance ? `, locked ${d.lockedBalance}` : ""
          }); recorded as gone`,
        details: { volume: d.volume, free_balance: d.freeBalance, locked_balance: d.lockedBalance },
      });
    }
    let more = false;
    for (const d of decisions) {
      // Holds: an order in flight (the poller wakes us), or the paper book still holds it.
      if (d.kind !== "sell") continue;
      if (await this.#sendClose(d.market, d.volume, flatten !== null) === "capped") more = true;
    }
    if (flatten) await this.#completeFlatten(flatten);
    return more;
  }

  async #completeFlatten(flatten: { id: number; reason: string }): Promise<void> {
    // Not while a position is open or a buy may still fill (completeFlatten checks both).
    const left = await completeFlatten(this.#options.sql, flatten.id);
    if (left.length > 0) return;
    this.#options.log.warn(
      `Flatten ${flatten.id} complete: the ledger holds nothing (${flatten.reason})`,
    );
  }

  /** The best bid of each of `markets` (absent: no bid), or null when the book could not be read. */
  async #bestBids(markets: string[]): Promise<Map<string, string> | null> {
    try {
      const { data } = await this.#options.rest.getOrderbook({ markets, count: 1 });
      const bids = new Map<string, string>();
      for (const book of data) {
        const best = Math.max(0, ...book.orderbook_units.map((u) => u.bid_price));
        if (best > 0) bids.set(book.market, String(best));
      }
      return bids;
    } catch (err) {
      this.#options.log.warn("Order book for the closer failed; nothing written off as dust now", {
        error: (err as Error).message,
      });
      return null;
    }
  }

  async #lastPrices(markets: string[]): Promise<Map<string, string>> {
    try {
      const data = await readTickers(this.#options.rest, markets);
      return new Map(data.map((t) => [t.market, String(t.trade_price)]));
    } catch (err) {
      this.#options.log.warn("Ticker for the closer failed; will try again", {
        error: (err as Error).message,
      });
      return new Map();
    }
  }

  /**
   * Whether the last live sells of `market` were refused (by Upbit; by the gate for want of bids
   * or as worth less than the minimum total; or stopped by self-match prevention with nothing
   * sold) so recently that the next must wait, and whether one of those refusals was a prevented
   * sell. A sell refused as below the minimum is not judged dust at once: dust is written off for
   * good, and the price may be back by the end of the backoff.
   */
  async #closeBackingOff(market: string): Promise<CloseBackoff> {
    // A prevented sell that sold nothing met the owner's own order at the top of the book; sent
    // again at once it meets the same order. One that sold part of the position made progress.
    const [row] = await this.#options.sql<
      { n: number; last: Date | null; prevented: boolean | null; below_min: boolean | null }[]
    >`
      select count(*)::int as n, max(updated_at) as last,
        bool_or(state = 'prevented') as prevented,
        bool_or(state = 'skipped' and reason = 'exit_below_min_total') as below_min
      from upbit_order_attempts r
      where mode = 'live' and side = 'ask' and symbol = ${market}
        and (state = 'rejected'
          or (state = 'skipped' and reason in ('no_bids', 'exit_below_min_total'))
          or (state = 'prevented' and coalesce(executed_volume, 0) = 0))
        and updated_at > coalesce((
          select max(updated_at) from upbit_order_attempts f
          where f.mode = 'live' and f.side = 'ask' and f.symbol = ${market}
            and (f.state in ('filled', 'cancelled')
              or (f.state = 'prevented' and coalesce(f.executed_volume, 0) > 0))), '-infinity')`;
    if (!row || row.n === 0 || !row.last) return { wait: false, prevented: false };
    // Below the minimum: at least the minute the sale's price is the highest close of, so what
    // is judged next is a price that held that long (the backoff alone starts at about 1 s).
    const waitMs = Math.max(
      this.#options.retryDelayMs(row.n),
      row.below_min === true ? LAST_CLOSE_MAX_AGE_SEC * 1000 : 0,
    );
    return {
      wait: row.last.getTime() + waitMs > this.#options.now(),
      prevented: row.prevented === true,
    };
  }

  /** Raises `code` for `market` with its error line, once while it stays active. */
  async #raiseOnce(code: OnceAlarm, market: string, message: string): Promise<void> {
    const alarmed = await this.#alarmedMarkets(code);
    if (alarmed.has(market)) return;
    this.#options.log.error(message, { market });
    await raiseAlarm(this.#options.sql, { code, market, message });
    alarmed.add(market);
  }

  /** Clears `code` for every alarmed market `cleared` picks. */
  async #clearAlarms(code: OnceAlarm, cleared: (market: string) => boolean): Promise<void> {
    const alarmed = await this.#alarmedMarkets(code);
    for (const market of [...alarmed]) {
      if (!cleared(market)) continue;
      await clearAlarm(this.#options.sql, code, market);
      alarmed.delete(market);
    }
  }

  async #alarmedMarkets(code: OnceAlarm): Promise<Set<string>> {
    if (this.#alarmed === null) {
      const active = await activeAlarms(this.#options.sql);
      this.#alarmed = new Map(
        ONCE_ALARMS.map((c) => [
          c,
          new Set(active.filter((a) => a.code === c && a.market !== null).map((a) => a.market!)),
        ]),
      );
    }
    return this.#alarmed.get(code)!;
  }

  /** Writes and sends a reduce-only market sell of `volume` of `market`. */
  async #sendClose(market: string, volume: string, flatten: boolean): Promise<"capped" | void> {
    if (!(await this.#options.underCap())) return "capped";
    const [seq] = await this.#options.sql<{ n: string }[]>`select nextval('upbit_close_seq') as n`;
    const identifier = closeIdentifierFor(this.#options.installation(), Number(seq!.n));
    const request = { market, side: "ask", ord_type: "market", volume, identifier };
    const attempt = await insertAttempt(this.#options.sql, {
      symbol: market,
      action: "CLOSE",
      mode: "live",
      side: "ask",
      ord_type: "market",
      price: null,
      volume,
      paper_trade_id: null,
      identifier,
      state: "pending",
      reason: flatten ? "flatten" : "ledger_open",
      request_json: request,
    });
    if (!attempt) return;
    this.#options.log.warn(
      `Close ${market}: selling ${volume} the ledger holds (${
        flatten ? "flatten requested" : "paper book flat"
      })`,
      { identifier },
    );
    return await this.#options.send(attempt);
  }
}

/**
 * Markets with a paper EXIT_LONG the executor has not handled yet (after its cursor, without an
 * attempt). Not every handled paper trade has an attempt: with `SHADOW_ENABLED=false` shadow mode
 * writes none, and such an exit must not hold the live position it never sold for good.
 */
async function marketsAwaitingExit(sql: Client, handledThrough: number): Promise<Set<string>> {
  const rows = await sql<{ symbol: string }[]>`
    select distinct p.symbol from paper_trades p
    where p.action = 'EXIT_LONG' and p.id > ${handledThrough}
      and not exists (select 1 from upbit_order_attempts a where a.paper_trade_id = p.id)`;
  return new Set(rows.map((r) => r.symbol));
}
