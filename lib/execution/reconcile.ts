/**
 * @module Reconciliation: compares the database with the exchange before any live order.
 *
 * One run ({@linkcode reconcile}):
 * 1. lists the live attempts whose outcome is not known yet (pending, sent, unknown). Their
 *    resolution by identifier is the executor's (it asks Upbit before it sends anything, and its
 *    resolver is private to it): the run reports them and leaves them to it;
 * 2. lists every open order, and every closed order created since the last completed run (at most
 *    7 days back, Upbit's window for `GET /v1/orders/closed`, paged by creation time);
 * 3. records each order carrying this installation's prefix `paper-{inst}-` that the database
 *    lacks (finding + alarm): never adopted, a person looks. The database has lost orders it made
 *    (a restored backup) or shares the prefix with a copy of itself; either way its later
 *    identifiers could be ones Upbit already holds, so the installation gets a new id, and entries
 *    are halted everywhere until a person has compared the ledger with the account. An order
 *    under an identifier the database holds that is not its attempt's order (a second order: a
 *    create that landed after its identifier was given up and rotated) is recorded the same way
 *    (finding + alarm + entries on its market halted), never adopted;
 * 4. reports each order carrying another installation's `paper-` prefix (coins bought under a lost
 *    database) with that installation's net volume per market (finding + alarm + log): never
 *    traded automatically, the owner decides;
 * 5. compares each market's exchange balance with the position ledger: less than the ledger raises
 *    an alarm and halts entries on that market; more is the owner's and is left alone;
 * 6. stores the run as completed and opens the reconciliation gate (unless it was closed again
 *    meanwhile).
 *
 * Orders without the `paper-` prefix are the owner's: counted, never touched. A run that fails
 * stores its error and leaves the gate closed.
 */
import { haltEntries } from "../control/trading_state.ts";
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { raiseAlarm } from "../store/alarms.ts";
import {
  attemptByIdentifier,
  type AttemptRow,
  installationId,
  renewInstallationId,
  unfinishedLiveSells,
} from "../store/order_attempts.ts";
import {
  completeReconciliation,
  failReconciliation,
  type Finding,
  type FindingRow,
  findingsOf,
  insertFinding,
  lastCompletedReconciliation,
  startReconciliation,
} from "../store/reconciliations.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import type { Account, Order } from "../upbit/schemas.ts";
import { fromUnits, toUnits } from "./risk_core.ts";
import { openVolumes } from "./risk_gate.ts";
import { type GateState, openReconciliationGate, reconciliationGate } from "./system_gate.ts";

const DAY_MS = 86_400_000;
/**
 * How far back closed orders are listed at most: Upbit's window is 7 days (§4.9); a minute less
 * keeps the request inside it whatever the two clocks say.
 */
export const CLOSED_LOOKBACK_MS = 7 * DAY_MS - 60_000;
/** Closed orders are listed from a little before the last run ended: no gap at the seam. */
const SEAM_OVERLAP_MS = 60_000;
/** Upbit's largest page of `GET /v1/orders/closed` (§4.9). */
const CLOSED_PAGE_LIMIT = 1000;
/** Upbit's largest page of `GET /v1/orders/open` (§4.8). */
const OPEN_PAGE_LIMIT = 100;

/** What a finding says of an exchange order. */
export interface FoundOrder {
  identifier: string;
  uuid: string;
  market: string;
  side: "bid" | "ask";
  state: string;
  executed_volume: string;
}

/** An order of another installation (or of a database before installation ids). */
export interface ForeignOrder extends FoundOrder {
  installation: string;
}

/** An order under one of an attempt's identifiers that is not the attempt's order. */
export interface SecondOrder extends FoundOrder {
  /** The attempt that holds the identifier, and the order it has (null: none). */
  attempt: number;
  attemptUuid: string | null;
}

/** What one run found. */
export interface ReconcileReport {
  id: number;
  startedAt: Date;
  completedAt: Date;
  closedFrom: Date;
  closedUntil: Date;
  /** Orders seen open / closed at the exchange. */
  openOrders: number;
  closedOrders: number;
  /** Orders without the `paper-` prefix: the owner's, left alone. */
  ownerOrders: number;
  /** Live attempts not resolved yet, left to the executor's resolution by identifier. */
  unresolvedAttempts: { identifier: string; symbol: string; state: string }[];
  /** Orders with this installation's prefix that the database lacks. */
  unrecordedOwnOrders: { identifier: string; uuid: string; market: string; state: string }[];
  /** Orders under an identifier the database holds that are not its attempt's order. */
  secondOrders: SecondOrder[];
  /** The installation's new id when unrecorded own orders were found, else null. */
  renewedInstallation: string | null;
  /** Orders with another installation's `paper-` prefix. */
  foreignOrders: ForeignOrder[];
  /** Net volume (bought - sold) of the foreign orders per installation and market. */
  foreignNetVolume: { installation: string; market: string; netVolume: string }[];
  /** Markets where the exchange holds less than the ledger (entries halted there). */
  balanceShortfalls: { market: string; ledger: string; exchange: string }[];
  /** Markets not compared because a sell of theirs is not settled yet. */
  balanceDeferred: string[];
  findings: number;
  /** Whether the reconciliation gate is open after this run. */
  gateOpen: boolean;
}

/** Options of {@linkcode reconcile}. */
export interface ReconcileOptions {
  /** @default {Date.now} */
  now?: () => number;
  /** Page size of the closed-order listing (tests use a small one). @default {1000} */
  closedPageLimit?: number;
  /**
   * A routine run (`RECONCILE_INTERVAL_MIN`) while the gate is open: orders go on, and a failure
   * says so. @default {false}
   */
  routine?: boolean;
}

/** The installation part of a `paper-` identifier: 8 base32 characters, or "legacy". */
export function installationOf(identifier: string): string {
  const m = /^paper-([a-z2-7]{8})-/.exec(identifier);
  return m ? m[1]! : "legacy";
}

/**
 * Runs one reconciliation (see the module doc).
 *
 * @throws {Error} when the exchange cannot be read; the run is stored with its error and the
 *   reconciliation gate stays as it was (closed after a live start or an outage).
 */
export async function reconcile(
  sql: Sql,
  rest: UpbitRest,
  log: Logger,
  opts: ReconcileOptions = {},
): Promise<ReconcileReport> {
  const now = opts.now ?? Date.now;
  const startedAt = new Date(now());
  const last = await lastCompletedReconciliation(sql);
  const floor = startedAt.getTime() - CLOSED_LOOKBACK_MS;
  const closedFrom = new Date(
    Math.max(floor, last ? last.closed_until.getTime() - SEAM_OVERLAP_MS : floor),
  );
  const run = await startReconciliation(sql, { startedAt, closedFrom, closedUntil: startedAt });
  try {
    return await runSteps(sql, rest, log, {
      run: run.id,
      startedAt,
      // The gate's closings are stamped by the database's clock: the run's start is compared on
      // the same clock, or an application clock behind it would keep the gate shut that long.
      gateFrom: run.databaseStartedAt,
      closedFrom,
      closedPageLimit: opts.closedPageLimit ?? CLOSED_PAGE_LIMIT,
    });
  } catch (err) {
    await failReconciliation(sql, run.id, (err as Error).message);
    const after = opts.routine
      ? "a routine run: the gate stays open"
      : "no live order goes out until one completes";
    log.error(`Reconciliation ${run.id} failed; ${after}`, { error: (err as Error).message });
    throw err;
  }
}

async function runSteps(
  sql: Sql,
  rest: UpbitRest,
  log: Logger,
  o: { run: number; startedAt: Date; gateFrom: Date; closedFrom: Date; closedPageLimit: number },
): Promise<ReconcileReport> {
  const inst = await installationId(sql);
  const ownPrefix = `paper-${inst}-`;
  const findings: Finding[] = [];

  // 1. Attempts whose outcome is open: the executor resolves them by identifier before it sends.
  const unresolved = await sql<{ identifier: string; symbol: string; state: string }[]>`
    select identifier, symbol, state from upbit_order_attempts
    where mode = 'live' and state in ('pending', 'sent', 'unknown') order by id`;
  for (const a of unresolved) {
    findings.push({
      kind: "attempt_unresolved",
      market: a.symbol,
      identifier: a.identifier,
      uuid: null,
      details: { state: a.state, resolved_by: "executor" },
    });
  }

  // 2. The exchange's orders.
  const open = await listOpenOrders(rest);
  const closed = await listClosedOrders(rest, {
    from: o.closedFrom,
    to: o.startedAt,
    pageLimit: o.closedPageLimit,
    onStuck: (second) => {
      findings.push({
        kind: "closed_window_truncated",
        market: null,
        identifier: null,
        uuid: null,
        details: { second: second.toISOString(), page_limit: o.closedPageLimit },
      });
    },
  });
  const byUuid = new Map<string, Order>();
  for (const order of [...closed, ...open]) byUuid.set(order.uuid, order);

  // 3 and 4. Classify by identifier.
  let ownerOrders = 0;
  const unrecordedOwn: ReconcileReport["unrecordedOwnOrders"] = [];
  const secondOrders: SecondOrder[] = [];
  const foreign: ForeignOrder[] = [];
  for (const order of byUuid.values()) {
    const identifier = order.identifier ?? "";
    if (!identifier.startsWith("paper-")) {
      ownerOrders++;
      continue;
    }
    const attempt = await attemptByIdentifier(sql, identifier);
    if (attempt) {
      if (!isSecondOrder(attempt, order)) continue;
      const second: SecondOrder = {
        identifier,
        uuid: order.uuid,
        market: order.market,
        side: order.side,
        state: order.state,
        executed_volume: order.executed_volume,
        attempt: attempt.id,
        attemptUuid: attempt.uuid,
      };
      secondOrders.push(second);
      findings.push({
        kind: "identifier_second_order",
        market: order.market,
        identifier,
        uuid: order.uuid,
        details: { ...second, ord_type: order.ord_type, created_at: order.created_at },
      });
      continue;
    }
    if (identifier.startsWith(ownPrefix)) {
      unrecordedOwn.push({
        identifier,
        uuid: order.uuid,
        market: order.market,
        state: order.state,
      });
      findings.push({
        kind: "own_order_unrecorded",
        market: order.market,
        identifier,
        uuid: order.uuid,
        details: {
          side: order.side,
          ord_type: order.ord_type,
          state: order.state,
          executed_volume: order.executed_volume,
          created_at: order.created_at,
        },
      });
      continue;
    }
    foreign.push({
      installation: installationOf(identifier),
      identifier,
      uuid: order.uuid,
      market: order.market,
      side: order.side,
      state: order.state,
      executed_volume: order.executed_volume,
    });
  }
  const foreignNet = netVolumes(foreign);
  for (const f of foreign) {
    findings.push({
      kind: "foreign_installation_order",
      market: f.market,
      identifier: f.identifier,
      uuid: f.uuid,
      details: {
        installation: f.installation,
        side: f.side,
        state: f.state,
        executed_volume: f.executed_volume,
      },
    });
  }

  // 5. Balances against the ledger. A market with a sell not settled yet is not judged: a fill
  // the poller has not recorded would look like missing coins; the next run judges it. Read in
  // this order, as the closer does: unsettled sells, then the ledger, then the balances. A sell
  // settling between the reads is then seen unsettled, or has its fills in the ledger (stored
  // with its final state) and in the balances; the other way round, a fill recorded between the
  // ledger and the sells read made the older ledger look short of coins (with orders flowing, as
  // during a routine run).
  const unsettledSells = new Set((await unfinishedLiveSells(sql)).map((a) => a.symbol));
  const ledger = await openVolumes(sql);
  const { data: accounts } = await rest.getAccounts();
  const deferred: string[] = [];
  for (const market of [...ledger.keys()]) {
    if (unsettledSells.has(market)) {
      ledger.delete(market);
      deferred.push(market);
    }
  }
  const shortfalls = compareBalances(ledger, accounts);
  for (const s of shortfalls) {
    findings.push({
      kind: "balance_below_ledger",
      market: s.market,
      identifier: null,
      uuid: null,
      details: { ledger: s.ledger, exchange: s.exchange },
    });
  }

  // Store and tell.
  for (const f of findings) await insertFinding(sql, o.run, f);
  // A crash before the renewal leaves the run incomplete: the next run finds the orders again.
  const renewed = unrecordedOwn.length > 0 ? await renewInstallationId(sql) : null;
  if (renewed) {
    const message =
      `Orders under this installation's prefix ${ownPrefix} are missing from the database (a restored backup, or a copy of it running elsewhere?); new identifiers use paper-${renewed}-`;
    log.error(message, { unrecorded_own_orders: unrecordedOwn.length });
    // The database does not know what upbot bought or sold since: no new position on top of a
    // ledger nobody has checked. A person compares it with the account and resumes.
    await haltEntries(sql, {
      scope: "global",
      reason: `${message}; entries halted until a person checks the ledger`,
      by: "reconciliation",
    });
  }
  for (const u of unrecordedOwn) {
    const message =
      `Order ${u.identifier} (uuid=${u.uuid}, ${u.state}) carries this installation's prefix but is not in the database; it is not adopted (new identifiers use paper-${renewed}-): check it`;
    await tell(sql, log, { code: "reconciliation_unrecorded_order", market: u.market, message }, u);
  }
  for (const o2 of secondOrders) {
    const message =
      `Order ${o2.uuid} (${o2.side}, ${o2.state}, executed ${o2.executed_volume}) under identifier ${o2.identifier} is not the order of attempt ${o2.attempt} (${
        o2.attemptUuid ?? "none"
      }) that holds it: a second order of upbot's is not in the ledger and not adopted; entries on ${o2.market} halted, check it`;
    const alarm = { code: "reconciliation_second_order", market: o2.market, message };
    await tell(sql, log, alarm, o2, { halt: true });
  }
  for (const n of foreignNet) {
    const message =
      `Orders of another installation (${n.installation}) on ${n.market}: net volume ${n.netVolume}; never traded by upbot, the owner decides`;
    const identifiers = foreign.filter((f) => f.market === n.market).map((f) => f.identifier);
    const alarm = { code: "reconciliation_foreign_orders", market: n.market, message };
    await tell(sql, log, alarm, { ...n, identifiers }, { level: "warn" });
  }
  for (const s of shortfalls) {
    const message =
      `Exchange holds ${s.exchange} on ${s.market}, less than the ledger's ${s.ledger}; entries on ${s.market} halted`;
    await tell(sql, log, { code: "balance_below_ledger", market: s.market, message }, s, {
      halt: true,
    });
  }

  // 6. Completed: the gate may open.
  const done = await completeReconciliation(sql, o.run, {
    openOrders: open.length,
    closedOrders: closed.length,
    findings: findings.length,
  });
  const gateOpen = await openReconciliationGate(sql, o.gateFrom);
  log.info(
    `Reconciliation ${o.run} completed: ${open.length} open and ${closed.length} closed order(s) since ${o.closedFrom.toISOString()}, ${findings.length} finding(s)${
      gateOpen ? "" : "; the gate was closed again meanwhile"
    }`,
    {
      unresolved_attempts: unresolved.length,
      unrecorded_own_orders: unrecordedOwn.length,
      second_orders: secondOrders.length,
      foreign_orders: foreign.length,
      balance_shortfalls: shortfalls.length,
      balance_deferred: deferred,
      owner_orders: ownerOrders,
    },
  );
  return {
    id: o.run,
    startedAt: o.startedAt,
    completedAt: done.completed_at!,
    closedFrom: o.closedFrom,
    closedUntil: o.startedAt,
    openOrders: open.length,
    closedOrders: closed.length,
    ownerOrders,
    unresolvedAttempts: [...unresolved],
    unrecordedOwnOrders: unrecordedOwn,
    secondOrders,
    renewedInstallation: renewed,
    foreignOrders: foreign,
    foreignNetVolume: foreignNet,
    balanceShortfalls: shortfalls,
    balanceDeferred: deferred,
    findings: findings.length,
    gateOpen,
  };
}

/**
 * Whether `order`, found under one of `attempt`'s identifiers, is another order than the
 * attempt's. An attempt whose outcome is open is the executor's to resolve (pending, sent,
 * unknown without an order), a conflict was reported when it was found, and a lost order is
 * asked about again by `recheckLostOrders`; any other attempt either has this order or none.
 */
function isSecondOrder(attempt: AttemptRow, order: Order): boolean {
  // Upbit answered the create under the current identifier with the attempt's uuid: another uuid
  // is another create (the rule of second_orders.ts; an order of the current identifier with
  // another uuid cannot exist, identifiers being unique).
  if (attempt.uuid !== null) return attempt.uuid !== order.uuid;
  if (["pending", "sent", "unknown", "conflict"].includes(attempt.state)) return false;
  return !(attempt.state === "failed" && attempt.reason === "order_lost");
}

/**
 * Tells a person about one finding: its alarm (with `details`), a halt of entries on its market
 * when `halt`, and a log line.
 */
async function tell(
  sql: Sql,
  log: Logger,
  alarm: { code: string; market: string; message: string },
  details: object,
  o: { halt?: boolean; level?: "error" | "warn" } = {},
): Promise<void> {
  await raiseAlarm(sql, { ...alarm, details });
  if (o.halt) {
    await haltEntries(sql, { scope: alarm.market, reason: alarm.message, by: "reconciliation" });
  }
  log[o.level ?? "error"](alarm.message, { market: alarm.market });
}

/** Every open order (wait and watch), page by page. */
async function listOpenOrders(rest: UpbitRest): Promise<Order[]> {
  const out: Order[] = [];
  for (let page = 1;; page++) {
    const { data } = await rest.getOrdersOpen({
      states: ["wait", "watch"],
      page,
      limit: OPEN_PAGE_LIMIT,
      orderBy: "asc",
    });
    out.push(...data);
    if (data.length < OPEN_PAGE_LIMIT) return out;
  }
}

/**
 * Every closed order created in [from, to], oldest first. Upbit drops what is beyond one page
 * (§4.9), so a full page is followed by the next from its newest creation second (creation times
 * have whole seconds); duplicates at the seam are removed by uuid. A full page within one single
 * second cannot advance: `onStuck` is told and the listing goes on from the next second (what
 * that second held beyond one page is reported, not seen).
 */
async function listClosedOrders(
  rest: UpbitRest,
  o: { from: Date; to: Date; pageLimit: number; onStuck: (second: Date) => void },
): Promise<Order[]> {
  const seen = new Map<string, Order>();
  let start = Math.floor(o.from.getTime() / 1000) * 1000;
  const end = o.to.getTime();
  while (start <= end) {
    const { data } = await rest.getOrdersClosed({
      startTime: start,
      endTime: end,
      limit: o.pageLimit,
      orderBy: "asc",
    });
    for (const order of data) seen.set(order.uuid, order);
    if (data.length < o.pageLimit) break;
    const newest = Math.max(...data.map((order) => Date.parse(order.created_at)));
    if (newest > start) {
      start = newest;
    } else {
      o.onStuck(new Date(start));
      start += 1000;
    }
  }
  return [...seen.values()];
}

/** Net volume (bids' executed - asks' executed) per installation and market. */
function netVolumes(orders: ForeignOrder[]): ReconcileReport["foreignNetVolume"] {
  const net = new Map<string, bigint>();
  for (const o of orders) {
    const key = `${o.installation}\u0000${o.market}`;
    const signed = toUnits(o.executed_volume) * (o.side === "bid" ? 1n : -1n);
    net.set(key, (net.get(key) ?? 0n) + signed);
  }
  return [...net].map(([key, units]) => {
    const [installation, market] = key.split("\u0000") as [string, string];
    return { installation, market, netVolume: fromUnits(units) };
  }).sort((a, b) => a.market.localeCompare(b.market));
}

/**
 * Markets where the exchange (available + locked) holds less than the ledger's open volume.
 * More than the ledger is the owner's and is not reported.
 */
export function compareBalances(
  ledger: ReadonlyMap<string, string>,
  accounts: readonly Account[],
): ReconcileReport["balanceShortfalls"] {
  const byCurrency = new Map(accounts.map((a) => [a.currency, a]));
  const out: ReconcileReport["balanceShortfalls"] = [];
  for (const [market, open] of ledger) {
    const a = byCurrency.get(market.slice(market.indexOf("-") + 1));
    const held = a ? toUnits(a.balance) + toUnits(a.locked) : 0n;
    if (held < toUnits(open)) {
      out.push({ market, ledger: fromUnits(toUnits(open)), exchange: fromUnits(held) });
    }
  }
  return out;
}

/** What the status JSON shows of reconciliation. */
export interface ReconciliationStatus {
  gate: GateState;
  /** The newest completed run, or null. */
  lastCompleted: { id: number; completedAt: Date; findings: number } | null;
  /** The findings of that run. */
  findings: FindingRow[];
}

/** The reconciliation gate, the newest completed run and its findings, for the status JSON. */
export async function reconciliationStatus(sql: Sql): Promise<ReconciliationStatus> {
  const last = await lastCompletedReconciliation(sql);
  return {
    gate: await reconciliationGate(sql),
    lastCompleted: last
      ? { id: last.id, completedAt: last.completed_at!, findings: last.findings_count }
      : null,
    findings: last ? await findingsOf(sql, last.id) : [],
  };
}
