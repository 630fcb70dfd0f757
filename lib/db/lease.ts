/**
 * @module The lease of a hot-standby pair: two upbots on one PostgreSQL database, and only the
 * holder of the lease runs the trading actors.
 *
 * The lease is a session advisory lock held by a connection of its own (the lease session): the
 * server frees it the moment that session ends (process killed, connection cut), so a standby
 * polling `pg_try_advisory_lock` takes over without any clock or timeout of ours. On taking the
 * lock the new holder increments the `upbot_lease` row's `epoch` (its fencing token) and records
 * its lease session's backend pid. A holder that loses the lease closes that session and may take
 * the lease again later, on a new session and at a new epoch.
 *
 * A lock alone does not stop a holder that lost it without noticing (its worker connections may
 * outlive the lease session). So every write that can lead to an order (a new attempt, a move to
 * `sent`, the evaluator's paper trades) runs {@linkcode assertLeaseHeld} in its own transaction:
 * the row is read `FOR SHARE`, its epoch must be the writer's, and the writer's lease session
 * must still hold the lock. A takeover's epoch increment waits for such a transaction to commit,
 * so an attempt either committed under the old lease (and the new holder's resolution pass and
 * live-start reconciliation find it, by identifier, before its first order) or is refused and
 * never sent.
 */
import { type Client, connect, type DbConnection, type Sql } from "./connect.ts";

/** Session advisory lock key of the lease ("upbot-run"; the key older upbots locked too). */
export const LEASE_LOCK_KEY = 0x7570626f7472;

/** How `pg_locks` shows {@linkcode LEASE_LOCK_KEY}: high and low 32 bits, `objsubid` 1. */
const KEY_HIGH = Math.floor(LEASE_LOCK_KEY / 2 ** 32);
const KEY_LOW = LEASE_LOCK_KEY % 2 ** 32;

/** `pg_locks k` rows of the lease lock granted to a session (`k.pid`), as a `where` condition. */
function leaseLockGranted(sql: Sql) {
  return sql`k.locktype = 'advisory' and k.granted
    and k.classid::int8 = ${KEY_HIGH} and k.objid::int8 = ${KEY_LOW} and k.objsubid = 1`;
}

/** The fencing token of one holding of the lease. */
export interface LeaseFence {
  /** `upbot_lease.epoch` written when this holder took the lease. */
  epoch: number;
  /** Backend pid of the lease session. */
  holderPid: number;
}

/** Thrown by a fenced attempt write of an upbot that no longer holds the lease. */
export class LeaseLostError extends Error {
  constructor(fence: LeaseFence, why: string) {
    super(
      `this upbot no longer holds the lease (its epoch ${fence.epoch}: ${why}); the attempt was not written and nothing is sent`,
    );
    this.name = "LeaseLostError";
  }
}

/** Fences of the clients opened for a lease holder's actors (see `connect` in `connect.ts`). */
const fences = new WeakMap<object, LeaseFence>();

/** Marks `sql` as writing under `fence`: its fenced attempt writes check it. */
export function setLeaseFence(sql: Client, fence: LeaseFence): void {
  fences.set(sql, fence);
}

/** The fence `sql` writes under, or undefined (unfenced: PGlite, tools, tests of one process). */
export function leaseFenceOf(sql: Sql): LeaseFence | undefined {
  return fences.get(sql);
}

/**
 * Checks, inside the caller's transaction `tx`, that `fence` still holds the lease; the row lock
 * taken (`FOR SHARE`) holds a takeover back until `tx` ends.
 *
 * @throws {LeaseLostError} when another upbot took the lease or the lease session is gone.
 */
export async function assertLeaseHeld(tx: Sql, fence: LeaseFence): Promise<void> {
  const [row] = await tx<FenceRow[]>`${leaseFenceQuery(tx, fence)}`;
  checkLeaseFence(fence, row);
}

/** What {@linkcode leaseFenceQuery} reads: the lease's epoch and whether its session holds it. */
export interface FenceRow {
  fence_epoch: number;
  fence_held: boolean;
}

/**
 * The fence check as a query fragment (`fence_epoch`, `fence_held`, one row, the lease row read
 * `FOR SHARE`), to run in a transaction ({@linkcode assertLeaseHeld}) or as a `WITH` part of
 * the very statement it guards: a single statement is a transaction of its own, so its write
 * and the lock that holds a takeover back commit together, in one round trip instead of three.
 */
export function leaseFenceQuery(sql: Sql, fence: LeaseFence) {
  return sql`
    select l.epoch::float8 as fence_epoch, exists (
      select 1 from pg_locks k
      where ${leaseLockGranted(sql)} and k.pid = ${fence.holderPid}
    ) as fence_held
    from upbot_lease l where l.id = 1 for share of l`;
}

/**
 * Judges what {@linkcode leaseFenceQuery} read (`undefined`: no row).
 *
 * @throws {LeaseLostError} when another upbot took the lease or the lease session is gone.
 */
export function checkLeaseFence(fence: LeaseFence, row: FenceRow | undefined): void {
  if (!row) throw new LeaseLostError(fence, "the upbot_lease row is missing");
  if (row.fence_epoch !== fence.epoch) {
    throw new LeaseLostError(fence, `another upbot took it at epoch ${row.fence_epoch}`);
  }
  if (!row.fence_held) throw new LeaseLostError(fence, "its lease session ended");
}

/**
 * The parts of one insert statement fenced by the writer's lease, if `sql` has one (else empty
 * parts): a `WITH` part reading the fence, a condition that inserts nothing when the lease is
 * lost, and the statement's answer, which names the inserting part `inserted`. {@linkcode
 * FencedInsert.inserted} then throws for a lost lease and returns the inserted row, if any.
 *
 * @example
 * ```ts ignore
 * const f = fencedInsert(sql);
 * const rows = await sql`with ${f.withFence} inserted as (
 *     insert into t (a) select 1 where true ${f.ifHeld} returning *
 *   ) ${f.answer}`;
 * const row = f.inserted(rows); // throws LeaseLostError under a lost lease
 * ```
 */
export function fencedInsert(sql: Sql): FencedInsert {
  const fence = leaseFenceOf(sql);
  if (!fence) {
    return {
      withFence: sql``,
      ifHeld: sql``,
      answer: sql`select * from inserted`,
      inserted: <T>(rows: readonly T[]) => rows[0],
    };
  }
  return {
    withFence: sql`fence as (${leaseFenceQuery(sql, fence)}),`,
    ifHeld: sql`and exists (select 1 from fence where fence_epoch = ${fence.epoch} and fence_held)`,
    answer: sql`select f.fence_epoch, f.fence_held, i.* from fence f left join inserted i on true`,
    inserted<T>(rows: readonly T[]): T | undefined {
      const row = rows[0] as (T & Partial<FenceRow>) | undefined;
      checkLeaseFence(fence, row as FenceRow | undefined);
      // The fence's row comes back even when nothing was inserted: then its columns are null.
      const { fence_epoch: _epoch, fence_held: _held, ...rest } = row!;
      return Object.values(rest).every((v) => v === null) ? undefined : rest as T;
    },
  };
}

/** See {@linkcode fencedInsert}. */
export interface FencedInsert {
  /** `fence as (...),` under a lease (put right after `with`), else nothing. */
  withFence: ReturnType<Sql>;
  /** `and <the lease is held>` for the inserting select's `where`, else nothing. */
  ifHeld: ReturnType<Sql>;
  /** The statement's final select, over the part named `inserted`. */
  answer: ReturnType<Sql>;
  /**
   * The inserted row, or undefined when nothing was inserted.
   *
   * @throws {LeaseLostError} when the writer's lease is lost (nothing was inserted).
   */
  inserted<T>(rows: readonly T[]): T | undefined;
}

/**
 * Whether some session holds the lease of this database now (an upbot trades on it). Advisory
 * locks are per database: another database on the server may have its own upbot.
 */
export async function leaseTaken(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ taken: boolean }[]>`
    select exists (
      select 1 from pg_locks k
      where ${leaseLockGranted(sql)}
        and k.database = (select oid from pg_database where datname = current_database())
    ) as taken`;
  return row?.taken === true;
}

/** Options of {@linkcode Lease}. */
export interface LeaseOptions {
  /** The database; the lease session is a client of its own with one connection. */
  connection: DbConnection;
  /** Recorded in `upbot_lease.holder` (host and pid), for people. */
  holder: string;
  /** Pause between tries of a standby. @default {1000} */
  pollMs?: number;
  /** Pause between the holder's checks of its lease session. @default {1000} */
  heartbeatMs?: number;
  /** A check that takes longer counts as the lease lost (a partition). @default {5000} */
  checkTimeoutMs?: number;
}

/**
 * One process's lease: {@linkcode acquire} waits for it, {@linkcode watch} reports its loss,
 * {@linkcode drop} gives it up to be taken again later, {@linkcode release} gives it up for good.
 * A lease that was lost (or dropped) can be acquired again: each holding gets a new epoch.
 */
export class Lease {
  readonly #options: Required<LeaseOptions>;
  /**
   * A client of one connection (not a connection reserved from the process's pool: postgres.js
   * 3.4 throws an uncaught error when a reserved connection the server closed is used again).
   * It reconnects silently after a loss, so the holder checks its backend pid. Closed when the
   * lease is lost or dropped: a new holding starts on a new session, never on one whose lock
   * state is in doubt.
   */
  #session: Client | undefined;
  #fence: LeaseFence | undefined;
  #stopped = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Wakes every pause under way (of `acquire` and of `watch`). */
  readonly #wakers = new Set<() => void>();
  /** Sessions being closed (awaited by `release`). */
  readonly #closing = new Set<Promise<void>>();

  constructor(options: LeaseOptions) {
    this.#options = { pollMs: 1000, heartbeatMs: 1000, checkTimeoutMs: 5000, ...options };
  }

  /** The fence while the lease is held, else undefined. */
  get fence(): LeaseFence | undefined {
    return this.#fence;
  }

  /** One try: the fence when this process now holds the lease, null when another does. */
  async tryAcquire(): Promise<LeaseFence | null> {
    if (this.#fence) return this.#fence;
    if (this.#stopped) return null;
    this.#session ??= connect(this.#options.connection, { max: 1, applicationName: "upbot-lease" });
    // One statement, so the lock and the epoch are taken on one session even if it reconnects.
    const [row] = await this.#session<{ epoch: number; holder_pid: number }[]>`
      with lock as (select pg_try_advisory_lock(${LEASE_LOCK_KEY}) as locked)
      update upbot_lease set epoch = epoch + 1, holder_pid = pg_backend_pid(),
        holder = ${this.#options.holder}, acquired_at = now()
      where id = 1 and (select locked from lock)
      returning epoch::float8 as epoch, holder_pid`;
    if (!row) return null;
    this.#fence = { epoch: row.epoch, holderPid: row.holder_pid };
    return this.#fence;
  }

  /**
   * Polls until this process holds the lease (resolves with the fence) or {@linkcode release}
   * is called (resolves null). A failed try (database down) is reported to `onError` and
   * retried; the session reconnects on the next try.
   */
  async acquire(onError: (err: Error) => void = () => {}): Promise<LeaseFence | null> {
    while (!this.#stopped) {
      try {
        const fence = await this.tryAcquire();
        if (fence) return fence;
      } catch (err) {
        onError(err as Error);
      }
      await this.#sleep(this.#options.pollMs);
    }
    return null;
  }

  /**
   * Checks the held lease every `heartbeatMs` on its own session; calls `onLost` once with the
   * reason when the session is gone, no longer holds the lock, or does not answer in
   * `checkTimeoutMs`. The lease then counts as not held and its session is closed (the server
   * frees a lock it may still hold), so {@linkcode acquire} can take it again. Watching ends
   * without a call when the lease is dropped or released.
   */
  watch(onLost: (reason: string) => void): void {
    const fence = this.#fence;
    const session = this.#session;
    if (!fence || !session) throw new Error("watch() needs the lease held");
    const check = async (): Promise<string | null> => {
      const timeout = new Promise<string>((resolve) => {
        this.#timer = setTimeout(
          () =>
            resolve(`the lease session did not answer within ${this.#options.checkTimeoutMs} ms`),
          this.#options.checkTimeoutMs,
        );
      });
      const probe = session<{ pid: number; held: boolean }[]>`
        select pg_backend_pid() as pid, exists (
          select 1 from pg_locks k
          where ${leaseLockGranted(session)} and k.pid = pg_backend_pid()
        ) as held`.then(([row]) => {
        // postgres.js reconnects a broken session silently: a new backend holds nothing.
        if (!row || row.pid !== fence.holderPid) return "the lease session was lost";
        return row.held ? null : "the lease session no longer holds the lock";
      }, (err) => `the lease session failed: ${(err as Error).message}`);
      try {
        return await Promise.race([probe, timeout]);
      } finally {
        clearTimeout(this.#timer);
      }
    };
    const holding = () => !this.#stopped && this.#fence === fence;
    const loop = async () => {
      while (holding()) {
        await this.#sleep(this.#options.heartbeatMs);
        if (!holding()) return;
        const lost = await check();
        if (lost && holding()) {
          this.#fence = undefined;
          this.#closeSession();
          onLost(lost);
          return;
        }
      }
    };
    void loop();
  }

  /**
   * Gives the lease up (unlocks when held) and closes the session, but keeps the lease usable:
   * a later {@linkcode acquire} tries again on a new session.
   */
  async drop(): Promise<void> {
    const session = this.#session;
    if (session && this.#fence) {
      this.#fence = undefined;
      await session`select pg_advisory_unlock(${LEASE_LOCK_KEY})`.catch(() => {});
    }
    this.#fence = undefined;
    this.#closeSession();
    this.#wakeAll();
    await Promise.all(this.#closing);
  }

  /** Stops polling and watching; unlocks when held and closes the session. Idempotent. */
  async release(): Promise<void> {
    this.#stopped = true;
    await this.drop();
  }

  /** Closes the session (the server frees its lock); the next try opens a new one. */
  #closeSession(): void {
    const session = this.#session;
    this.#session = undefined;
    if (!session) return;
    const closing: Promise<void> = session.end({ timeout: 1 })
      .catch(() => {})
      .finally(() => this.#closing.delete(closing));
    this.#closing.add(closing);
  }

  #wakeAll(): void {
    for (const wake of [...this.#wakers]) wake();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(t);
        this.#wakers.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }
}
