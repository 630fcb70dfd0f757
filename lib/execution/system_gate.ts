/**
 * @module The reconciliation gate: a system state (stored, separate from the operator's halt)
 * that stops EVERY live order, entries and exits alike, until upbot has compared its database
 * with the exchange. Closed at a live start and when the private stream or the REST connection
 * has been lost for more than a minute; opened only by a reconciliation that started after the
 * gate was last closed (one that began before an outage cannot vouch for what followed it).
 */
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";

/** How long a connection may be lost before the gate closes (ms). */
export const OUTAGE_LIMIT_MS = 60_000;

/** The gate's state: `open` false means no live order of any kind may be sent. */
export interface GateState {
  open: boolean;
  /** Why it is closed, or null while open. */
  reason: string | null;
  /** When it last changed, or null when never set. */
  since: Date | null;
}

/**
 * The reconciliation gate now. Never closed before (shadow or test only so far): open.
 *
 * @example
 * ```ts ignore
 * const gate = await reconciliationGate(sql);
 * if (!gate.open) return "wait"; // nothing is sent, not even an exit
 * ```
 */
export async function reconciliationGate(sql: Sql): Promise<GateState> {
  const [row] = await sql<{ open: boolean; reason: string | null; changed_at: Date }[]>`
    select open, reason, changed_at from system_gates where name = 'reconciliation'`;
  if (!row) return { open: true, reason: null, since: null };
  return { open: row.open, reason: row.reason, since: row.changed_at };
}

/** Closes the gate with `reason` (e.g. "live start", "private stream lost for 75 s"). */
export async function closeReconciliationGate(sql: Sql, reason: string): Promise<void> {
  if (reason.trim() === "") throw new Error("a closed gate's reason must not be empty");
  await sql`
    insert into system_gates (name, open, reason, changed_at)
    values ('reconciliation', false, ${reason}, clock_timestamp())
    on conflict (name) do update set open = false, reason = excluded.reason,
      changed_at = excluded.changed_at`;
}

/**
 * Opens the gate for a reconciliation that started at `startedAt`, unless the gate was closed
 * again after that. Returns whether the gate is open now. `startedAt` has millisecond precision
 * and the closing time microseconds: compared at the millisecond, so a run started in the same
 * millisecond as the closing that preceded it (the executor's live start on a fast database)
 * counts as after it.
 */
export async function openReconciliationGate(sql: Sql, startedAt: Date): Promise<boolean> {
  const rows = await sql`
    update system_gates set open = true, reason = null, changed_at = clock_timestamp()
    where name = 'reconciliation'
      and (open or date_trunc('milliseconds', changed_at) <= ${startedAt})
    returning 1`;
  if (rows.length > 0) return true;
  return (await reconciliationGate(sql)).open;
}

/** A connection whose loss may close the gate. */
export type WatchedConnection = "private_stream" | "rest";

/**
 * Tracks when each connection was lost. Pure (no clock, no I/O): the owner reports losses and
 * recoveries and asks {@linkcode OutageWatch.overdue} on its timer; an outage past the limit
 * is reported once, and the owner closes the gate with {@linkcode closeReconciliationGate}.
 */
export class OutageWatch {
  #lostAt = new Map<WatchedConnection, number>();
  #reported = new Set<WatchedConnection>();
  readonly limitMs: number;

  constructor(limitMs = OUTAGE_LIMIT_MS) {
    this.limitMs = limitMs;
  }

  /** `connection` failed at `nowMs` (a repeat keeps the first time). */
  lost(connection: WatchedConnection, nowMs: number): void {
    if (!this.#lostAt.has(connection)) this.#lostAt.set(connection, nowMs);
  }

  /** `connection` works again. */
  restored(connection: WatchedConnection): void {
    this.#lostAt.delete(connection);
    this.#reported.delete(connection);
  }

  /** Whether `connection` is lost now. */
  isLost(connection: WatchedConnection): boolean {
    return this.#lostAt.has(connection);
  }

  /** Reports `connection`'s outage again at the next {@linkcode overdue} (closing failed). */
  unreport(connection: WatchedConnection): void {
    this.#reported.delete(connection);
  }

  /**
   * Connections lost for longer than the limit at `nowMs` and not reported yet, with the reason
   * to close the gate with; each outage is returned once.
   */
  overdue(nowMs: number): { connection: WatchedConnection; reason: string }[] {
    const out: { connection: WatchedConnection; reason: string }[] = [];
    for (const [connection, at] of this.#lostAt) {
      if (nowMs - at <= this.limitMs || this.#reported.has(connection)) continue;
      this.#reported.add(connection);
      const what = connection === "rest" ? "REST connection" : "private stream";
      out.push({
        connection,
        reason: `${what} lost for ${Math.round((nowMs - at) / 1000)} s since ${
          new Date(at).toISOString()
        }: reconcile before any live order`,
      });
    }
    return out;
  }
}

/**
 * An {@linkcode OutageWatch} that closes the reconciliation gate itself: the actor owning a
 * connection reports `lost` / `restored` and calls {@linkcode ConnectionGate.check} on its timer;
 * an outage past the limit closes the gate (once per outage), and the executor reconciles before
 * its next order.
 *
 * @example
 * ```ts ignore
 * const gate = new ConnectionGate(sql, log);
 * ws.onClose = () => gate.lost("private_stream");
 * ws.onOpen = () => gate.restored("private_stream");
 * setInterval(() => gate.check(), 5000);
 * ```
 */
export class ConnectionGate {
  #sql: Sql;
  #log: Logger;
  #watch: OutageWatch;
  #now: () => number;

  constructor(sql: Sql, log: Logger, o: { limitMs?: number; now?: () => number } = {}) {
    this.#sql = sql;
    this.#log = log;
    this.#watch = new OutageWatch(o.limitMs);
    this.#now = o.now ?? Date.now;
  }

  /** `connection` failed now. */
  lost(connection: WatchedConnection): void {
    this.#watch.lost(connection, this.#now());
  }

  /** `connection` works again. */
  restored(connection: WatchedConnection): void {
    this.#watch.restored(connection);
  }

  /** Whether `connection` is lost now (for the status). */
  isLost(connection: WatchedConnection): boolean {
    return this.#watch.isLost(connection);
  }

  /**
   * Closes the gate for every outage past the limit; returns how many closed it.
   *
   * @throws when the gate cannot be stored; the outages not stored are closed at the next check.
   */
  async check(): Promise<number> {
    const overdue = this.#watch.overdue(this.#now());
    for (const [i, o] of overdue.entries()) {
      try {
        await closeReconciliationGate(this.#sql, o.reason);
      } catch (err) {
        // Not closed: the next check must try again rather than treat the outage as handled.
        for (const left of overdue.slice(i)) this.#watch.unreport(left.connection);
        throw err;
      }
      this.#log.warn(`Reconciliation gate closed: ${o.reason}`, { connection: o.connection });
    }
    return overdue.length;
  }
}
