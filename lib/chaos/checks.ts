/**
 * @module The crash suite's verdict: what upbot's database says it did, compared with what the
 * simulator says happened. Pure: every input is read before, so a test can feed it a broken
 * history and see each check fail.
 */
import { type Dec, dec, formatDec, ZERO } from "../decimal.ts";
import { type OrderState, stateOfExchangeOrder } from "../execution/order_state.ts";
import type { LedgerPosition } from "../execution/position_ledger.ts";

/** One order as the simulator's `GET /_sim/orders` lists it. */
export interface ExchangeOrder {
  uuid: string;
  identifier: string | null;
  market: string;
  side: "bid" | "ask";
  state: string;
  executed_volume: string;
}

/** The columns of `upbit_order_attempts` the checks read. */
export interface AttemptFacts {
  id: number;
  symbol: string;
  action: string;
  mode: string;
  side: string;
  paper_trade_id: number | null;
  state: OrderState;
  uuid: string | null;
  executed_volume: string | null;
}

/** Everything the checks read. */
export interface CrashFacts {
  installationId: string;
  exchangeOrders: ExchangeOrder[];
  attempts: AttemptFacts[];
  /** The id of every paper trade. */
  paperTradeIds: number[];
  /** Every row of `upbit_order_identifiers`. */
  identifiers: { identifier: string; attempt_id: number }[];
  ledger: LedgerPosition[];
  /** The simulator's balance + locked per currency (`BTC`, ...). */
  exchangeHoldings: Record<string, string>;
  /** The owner's coins at start per market (`KRW-BTC` -> `0.5`). */
  ownerStart: Record<string, string>;
  /** The markets traded. */
  markets: string[];
}

/** One line of the printed table. */
export interface CheckResult {
  name: string;
  ok: boolean;
  /** Counts when it holds; the first violations when it does not. */
  detail: string;
}

const NON_FINAL: ReadonlySet<string> = new Set([
  "pending",
  "sent",
  "unknown",
  "open",
  "partially_filled",
]);

const MAX_LISTED = 5;

function verdict(name: string, violations: string[], okDetail: string): CheckResult {
  if (violations.length === 0) return { name, ok: true, detail: okDetail };
  const more = violations.length > MAX_LISTED ? ` (+${violations.length - MAX_LISTED} more)` : "";
  return { name, ok: false, detail: violations.slice(0, MAX_LISTED).join("; ") + more };
}

const coinOf = (market: string) => market.slice(market.indexOf("-") + 1);

/** Runs every check of the crash suite on `f`. */
export function checkCrashFacts(f: CrashFacts): CheckResult[] {
  const prefix = `paper-${f.installationId}-`;
  const ours = f.exchangeOrders.filter((o) => o.identifier?.startsWith(prefix));
  const foreign = f.exchangeOrders.filter((o) => !o.identifier?.startsWith(prefix));
  const attemptOfIdentifier = new Map(f.identifiers.map((r) => [r.identifier, r.attempt_id]));
  const attempts = new Map(f.attempts.map((a) => [a.id, a]));
  const results: CheckResult[] = [];

  // 1. Every exchange order of this installation maps to exactly one attempt, and no attempt
  // has two exchange orders (a double order).
  const ordersOfAttempt = new Map<number, ExchangeOrder[]>();
  const unmapped: string[] = [];
  for (const o of ours) {
    const id = attemptOfIdentifier.get(o.identifier!);
    if (id === undefined || !attempts.has(id)) {
      unmapped.push(`${o.identifier} (${o.uuid}) has no attempt`);
      continue;
    }
    ordersOfAttempt.set(id, [...(ordersOfAttempt.get(id) ?? []), o]);
  }
  for (const o of foreign) unmapped.push(`${o.identifier ?? "(no identifier)"} is not upbot's`);
  for (const [id, orders] of ordersOfAttempt) {
    if (orders.length > 1) {
      unmapped.push(`attempt ${id} has ${orders.length} exchange orders`);
    }
  }
  results.push(verdict(
    "every exchange order maps to exactly one attempt",
    unmapped,
    `${ours.length} orders, ${ordersOfAttempt.size} attempts`,
  ));

  // 2. Every paper trade has at most one entry order on the exchange.
  const entriesOfTrade = new Map<number, number>();
  for (const [id, orders] of ordersOfAttempt) {
    const a = attempts.get(id)!;
    if (a.action !== "ENTER_LONG" || a.paper_trade_id === null) continue;
    entriesOfTrade.set(
      a.paper_trade_id,
      (entriesOfTrade.get(a.paper_trade_id) ?? 0) + orders.length,
    );
  }
  const entryAttempts = new Map<number, number>();
  for (const a of f.attempts) {
    if (a.action !== "ENTER_LONG" || a.paper_trade_id === null) continue;
    entryAttempts.set(a.paper_trade_id, (entryAttempts.get(a.paper_trade_id) ?? 0) + 1);
  }
  const doubled = [
    ...[...entriesOfTrade].filter(([, n]) => n > 1).map(([t, n]) =>
      `paper trade ${t}: ${n} entry orders`
    ),
    ...[...entryAttempts].filter(([, n]) => n > 1).map(([t, n]) =>
      `paper trade ${t}: ${n} entry attempts`
    ),
  ];
  results.push(verdict(
    "every paper trade has at most one entry order",
    doubled,
    `${entriesOfTrade.size} paper trades entered on the exchange`,
  ));

  // A paper trade older than one the executor handled, with no attempt, was lost (a cursor that
  // moved past it); the newest few may simply not have been read before the stop.
  const handled = new Set(f.attempts.map((a) => a.paper_trade_id).filter((id) => id !== null));
  const newestHandled = Math.max(0, ...handled);
  const lost = f.paperTradeIds.filter((id) => id < newestHandled && !handled.has(id)).map((id) =>
    `paper trade ${id} has no attempt`
  );
  results.push(verdict(
    "no paper trade lost by the executor",
    lost,
    `${f.paperTradeIds.length} paper trades, ${handled.size} with an attempt`,
  ));

  // 3. Never more sold than bought per market (the exchange's executed volumes).
  const oversold: string[] = [];
  const moved: string[] = [];
  for (const market of f.markets) {
    let bought = ZERO, sold = ZERO;
    for (const o of ours) {
      if (o.market !== market) continue;
      if (o.side === "bid") bought += dec(o.executed_volume);
      else sold += dec(o.executed_volume);
    }
    if (sold > bought) {
      oversold.push(`${market}: sold ${formatDec(sold)} > bought ${formatDec(bought)}`);
    }
    moved.push(`${coinOf(market)} ${formatDec(bought)}/${formatDec(sold)}`);
  }
  results.push(verdict(
    "never more sold than bought per market",
    oversold,
    `bought/sold ${moved.join(", ")}`,
  ));

  // 4. Every attempt's state and executed volume equal the exchange's order; an attempt that
  // never reached the exchange is in a final state that says so.
  const mismatched: string[] = [];
  let compared = 0;
  for (const a of f.attempts) {
    if (a.mode !== "live") continue;
    const orders = ordersOfAttempt.get(a.id) ?? [];
    const order = orders[0];
    if (!order) {
      if (["filled", "cancelled", "prevented", "open", "partially_filled"].includes(a.state)) {
        mismatched.push(`attempt ${a.id} is ${a.state} but no exchange order has its identifiers`);
      }
      continue;
    }
    compared++;
    const expected = stateOfExchangeOrder(order);
    const executed = dec(a.executed_volume ?? "0");
    if (a.state !== expected || executed !== dec(order.executed_volume) || a.uuid !== order.uuid) {
      mismatched.push(
        `attempt ${a.id} ${a.state} ${formatDec(executed)} ${a.uuid ?? "no uuid"} vs exchange ` +
          `${order.state} ${order.executed_volume} ${order.uuid}`,
      );
    }
  }
  results.push(verdict(
    "every attempt's state equals the exchange's",
    mismatched,
    `${compared} attempts compared`,
  ));

  // 5. No attempt left non-final.
  const open = f.attempts.filter((a) => NON_FINAL.has(a.state)).map((a) =>
    `attempt ${a.id} ${a.state}`
  );
  const states = new Map<string, number>();
  for (const a of f.attempts) states.set(a.state, (states.get(a.state) ?? 0) + 1);
  results.push(verdict(
    "no attempt left non-final",
    open,
    [...states].map(([s, n]) => `${s} ${n}`).join(", ") || "no attempts",
  ));

  // 6. The ledger's net fills equal the exchange's holdings minus the owner's starting coins.
  const ledgerOf = new Map(f.ledger.map((p) => [p.symbol, p]));
  const ledgerWrong: string[] = [];
  const flatWrong: string[] = [];
  const held: string[] = [];
  for (const market of f.markets) {
    const p = ledgerOf.get(market);
    const owner = dec(f.ownerStart[market] ?? "0");
    const upbotHeld: Dec = dec(f.exchangeHoldings[coinOf(market)] ?? "0") - owner;
    const net: Dec = p ? dec(p.bought) - dec(p.sold) : ZERO;
    if (net !== upbotHeld) {
      ledgerWrong.push(
        `${market}: ledger bought-sold ${formatDec(net)} vs exchange minus owner ${
          formatDec(upbotHeld)
        }`,
      );
    }
    // 7. Flat book: the ledger owns nothing, and what upbot holds is recorded dust (or gone).
    const open = p ? dec(p.openVolume) : ZERO;
    const writtenOff: Dec = p ? dec(p.dust) + dec(p.gone) : ZERO;
    if (open !== ZERO) flatWrong.push(`${market}: ledger still owns ${formatDec(open)}`);
    if (upbotHeld !== writtenOff) {
      flatWrong.push(
        `${market}: upbot holds ${formatDec(upbotHeld)} but recorded dust+gone ${
          formatDec(writtenOff)
        }`,
      );
    }
    held.push(`${coinOf(market)} ${formatDec(upbotHeld)}`);
  }
  results.push(verdict(
    "ledger = exchange holdings - owner's coins",
    ledgerWrong,
    `upbot holds ${held.join(", ")}`,
  ));
  results.push(verdict(
    "flat book: nothing held beyond recorded dust",
    flatWrong,
    `dust ${f.ledger.map((p) => `${coinOf(p.symbol)} ${p.dust}`).join(", ") || "none"}`,
  ));
  return results;
}

/** The results as a fixed-width table (one line per check, then the verdict). */
export function formatCheckTable(results: CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines = results.map((r) =>
    `${r.ok ? "PASS" : "FAIL"}  ${r.name.padEnd(width)}  ${r.detail}`
  );
  const failed = results.filter((r) => !r.ok).length;
  lines.push(failed === 0 ? "all checks passed" : `${failed} check(s) FAILED`);
  return lines.join("\n");
}
