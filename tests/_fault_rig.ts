/**
 * @module A running upbot (through `startUpbot`: workers, supervisor, HTTP) on a fresh database of
 * one backend, pointed at a simulator the caller owns, for the reliability tests
 * (worker_faults_test.ts, sim_restart_test.ts). The caller starts and stops the simulator, so it
 * can restart it on the same port underneath upbot.
 */
import assert from "node:assert/strict";
import type { UpbotSupervisorEvent, UpbotSupervisorOptions } from "../lib/pipeline/supervisor.ts";
import { parseConfig } from "../lib/config.ts";
import type { Client } from "../lib/db/connect.ts";
import { configureLogging, loggingSettings, type LogLevel, setLogSink } from "../lib/log.ts";
import { startUpbot, type Upbot } from "../lib/upbot.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../sim/mod.ts";
import { answerWithin, openTestDatabase } from "./_db.ts";

const TRACE = Deno.env.get("RIG_TRACE") === "1";

/** With `RIG_TRACE=1`, a progress line on stderr (to see where a slow test waits). */
export function trace(line: string): void {
  if (TRACE) {
    Deno.stderr.writeSync(new TextEncoder().encode(`${new Date().toISOString()} ${line}\n`));
  }
}

/** Supervisor timings for tests: quick restarts without jitter, a short shutdown, no status lines. */
export const FAST_SUPERVISOR = {
  restartMinDelayMs: 200,
  restartMaxDelayMs: 2_000,
  restartJitter: 0,
  shutdownTimeoutMs: 3_000,
  statusLogIntervalMs: 0,
} as const satisfies Partial<UpbotSupervisorOptions>;

/** What a rig undoes on dispose, in reverse order. */
export type Cleanups = (() => Promise<void> | void)[];

/**
 * Sends the main thread's log lines to `lines` until `restore`, which also puts back the log
 * settings (upbot's start changes them).
 */
export function captureLog(): { lines: string[]; restore(): void } {
  const lines: string[] = [];
  const previousLog = loggingSettings();
  const restoreSink = setLogSink((line) => lines.push(line));
  return {
    lines,
    restore() {
      restoreSink();
      configureLogging(previousLog);
    },
  };
}

/**
 * upbot's database variables for a fresh database of `backend`: `DATA_DIR` of a new temporary
 * directory for the embedded PGlite, else `DATABASE_URL` of a new database; its removal is pushed
 * on `cleanups`.
 */
export async function freshDatabaseEnv(
  backend: string,
  cleanups: Cleanups,
): Promise<Record<string, string>> {
  if (backend === "pglite") {
    const dir = await Deno.makeTempDir({ prefix: "upbot_rig_" });
    cleanups.push(() => Deno.remove(dir, { recursive: true }));
    return { DATA_DIR: dir };
  }
  const db = await openTestDatabase(backend);
  cleanups.push(() => db.close());
  assert.equal(db.connection.kind, "url");
  return { DATABASE_URL: db.connection.kind === "url" ? db.connection.url : "" };
}

/** `startSimulator`, closed by `await using`. */
export async function startDisposableSimulator(
  options: SimulatorOptions,
): Promise<Simulator & AsyncDisposable> {
  const sim = await startSimulator(options);
  return Object.assign(sim, { [Symbol.asyncDispose]: () => sim.close() });
}

/** A running upbot on a fresh database. */
export interface UpbotRig {
  backend: string;
  upbot: Upbot;
  /** The database variables upbot got (`DATA_DIR` or `DATABASE_URL`), to start another on it. */
  dbEnv: Record<string, string>;
  sql: Client;
  /** Main-thread log lines (supervisor, boot). */
  lines: string[];
  events: UpbotSupervisorEvent[];
  /** Polls `check` every 100 ms until it holds; fails with a summary after `timeoutMs`. */
  until(what: string, check: () => Promise<boolean> | boolean, timeoutMs?: number): Promise<void>;
  /** Rows of `select count(*) from <table> where <where>`. */
  count(table: string, where?: string): Promise<number>;
  /** A summary of the database and actors, for failure messages. */
  describe(): Promise<string>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of {@linkcode startUpbotRig}. */
export interface UpbotRigOptions {
  backend: string;
  sim: { restUrl: string; wsUrl: string };
  markets: string[];
  /** upbot's variables, on top of the simulator's URLs, a fresh database and port 0. */
  env?: Record<string, string>;
  /** Supervisor options on top of fast test timings. */
  supervisor?: Partial<UpbotSupervisorOptions>;
}

/** Starts upbot on a fresh database of `backend` against the simulator at `sim`. */
export async function startUpbotRig(options: UpbotRigOptions): Promise<UpbotRig> {
  const events: UpbotSupervisorEvent[] = [];
  const log = captureLog();
  const lines = log.lines;
  const cleanups: Cleanups = [log.restore];
  const cleanUp = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    const dbEnv = await freshDatabaseEnv(options.backend, cleanups);
    const config = parseConfig({
      HTTP_PORT: "0",
      LOG_LEVEL: "info",
      LOG_FORMAT: "json",
      MARKETS: options.markets.join(","),
      UPBIT_REST_URL: options.sim.restUrl,
      UPBIT_WS_URL: options.sim.wsUrl,
      ...dbEnv,
      ...options.env,
    });
    const upbot = await startUpbot(config, {
      supervisor: {
        // Workers print straight to stdout; RIG_WORKER_LOG_LEVEL=info shows them.
        log: {
          level: (Deno.env.get("RIG_WORKER_LOG_LEVEL") ?? "error") as LogLevel,
          format: "json",
        },
        ...FAST_SUPERVISOR,
        onEvent: (event) => events.push(event),
        ...options.supervisor,
      },
    });
    cleanups.push(() => upbot.stop());
    const sql = upbot.sql;
    const count = async (table: string, where = "true") => {
      const [row] = await sql.unsafe(`select count(*)::int as n from ${table} where ${where}`);
      return row!.n as number;
    };
    const describe = async () => {
      // Bounded: a failure report must not wait for good on a stalled database.
      const counts = await answerWithin(
        sql`
          select (select count(*) from market_1s where is_final) as final_bars,
                 (select count(*) from paper_trades) as paper_trades,
                 (select count(*) from upbit_order_attempts) as attempts`.then(([row]) => row),
        10_000,
        "counts",
      ).catch((err) => String(err));
      const actors = upbot.supervisor.status().map((s) =>
        `${s.name}=${s.state}/restarts=${s.restarts}/err=${s.lastError ?? "-"}`
      );
      return [
        `backend=${options.backend}`,
        `counts=${JSON.stringify(counts)}`,
        `actors: ${actors.join(" ")}`,
        `events: ${JSON.stringify(events.slice(-10))}`,
        `last lines:\n${lines.slice(-15).join("\n")}`,
      ].join("\n");
    };
    return {
      backend: options.backend,
      upbot,
      dbEnv,
      sql,
      lines,
      events,
      count,
      describe,
      async until(what, check, timeoutMs = 60_000) {
        const deadline = Date.now() + timeoutMs;
        let lastError: unknown;
        for (;;) {
          try {
            // A check that hangs (a stalled database) counts as failed, not as waiting forever.
            if (await answerWithin(Promise.resolve(check()), 10_000, "check")) return;
          } catch (err) {
            // The test's own queries may fail while a fault is being recovered from (e.g. the
            // embedded database waits out a hung worker's transaction): keep watching.
            lastError = err;
          }
          trace(`until ${what}: ${lastError ? String(lastError) : "not yet"}`);
          if (Date.now() > deadline) {
            throw new Error(
              `not within ${timeoutMs} ms: ${what} (last error: ${
                String(lastError)
              })\n${await describe()}`,
            );
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      },
      [Symbol.asyncDispose]: cleanUp,
    };
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

/**
 * Paper trades are contiguous per market: ENTER, EXIT, ENTER, … with each EXIT pointing at the
 * ENTER just before it, so no entry is doubled and none has two exits.
 */
export async function assertPaperTradesContiguous(sql: Client): Promise<number> {
  const rows = await sql<
    { id: string; symbol: string; action: string; entry_id: string | null }[]
  >`select p.id::text, p.symbol, p.action, p.entry_id::text from paper_trades p order by p.id`;
  for (const [market, list] of Map.groupBy(rows, (r) => r.symbol)) {
    let open: string | null = null;
    for (const r of list) {
      if (r.action === "ENTER_LONG") {
        assert.equal(open, null, `${market}: entry ${r.id} while ${open} is open`);
        open = r.id;
      } else {
        assert.equal(r.action, "EXIT_LONG");
        assert.ok(open !== null, `${market}: exit ${r.id} without an open entry`);
        assert.equal(r.entry_id, open, `${market}: exit ${r.id} closes ${r.entry_id}, not ${open}`);
        open = null;
      }
    }
  }
  return rows.length;
}

/** Every paper trade has exactly one attempt row, and every attempt row has its paper trade. */
export async function assertOneAttemptPerPaperTrade(sql: Client): Promise<void> {
  // A paper trade the evaluator committed a moment ago may not have its attempt yet (a new live
  // entry is written once the risk gate judged it): more than one is final, none gets 10 s.
  const badRows = () =>
    sql`
    select p.id::text, count(a.id)::int as attempts
    from paper_trades p left join upbit_order_attempts a on a.paper_trade_id = p.id
    group by p.id having count(a.id) <> 1 order by p.id`;
  let bad = await badRows();
  for (let i = 0; i < 100 && bad.length > 0 && bad.every((r) => r.attempts === 0); i++) {
    await new Promise((r) => setTimeout(r, 100));
    bad = await badRows();
  }
  assert.deepEqual([...bad], [], "paper trades without exactly one attempt");
  const orphans = await sql`
    select a.identifier from upbit_order_attempts a
    where a.paper_trade_id is not null
      and not exists (select 1 from paper_trades p where p.id = a.paper_trade_id)`;
  assert.deepEqual([...orphans], []);
  const [dup] = await sql`
    select count(*)::int as n, count(distinct identifier)::int as distinct_n
    from upbit_order_attempts`;
  assert.equal(dup!.n, dup!.distinct_n, "identifiers are unique");
}

/**
 * Bars are neither duplicated nor missing: one row per (market, second), and every second from a
 * market's first final bar to its last has its final bar (the simulator trades every second),
 * except seconds inside `outages` (`[fromMs, toMs]`, when the simulator was down and no trade
 * existed). Returns the number of final bars checked.
 */
export async function assertBarsContiguous(
  sql: Client,
  markets: string[],
  outages: [number, number][] = [],
): Promise<number> {
  const [dup] = await sql`
    select count(*)::int as n, count(distinct (symbol, ts))::int as distinct_n from market_1s`;
  assert.equal(dup!.n, dup!.distinct_n, "one bar per market and second");
  let total = 0;
  for (const market of markets) {
    const [row] = await sql`
      select count(*)::int as n,
             (extract(epoch from max(ts) - min(ts)))::int + 1 as span
      from market_1s where symbol = ${market} and is_final`;
    // Each final bar whose next second has no final bar (the last bar excepted).
    const gaps = await sql`
      select (extract(epoch from b.ts) * 1000)::float8 as ms,
             (select extract(epoch from min(n.ts)) * 1000 from market_1s n
              where n.symbol = b.symbol and n.is_final and n.ts > b.ts)::float8 as next_ms
      from market_1s b
      where b.symbol = ${market} and b.is_final
        and b.ts < (select max(ts) from market_1s where symbol = ${market} and is_final)
        and not exists (select 1 from market_1s n where n.symbol = b.symbol and n.is_final
                        and n.ts = b.ts + interval '1 second')
      order by b.ts`;
    const unexplained = gaps.filter((g) =>
      !outages.some(([from, to]) => g.ms + 1000 >= from - 1000 && g.next_ms <= to + 1000)
    );
    assert.deepEqual(
      unexplained.map((g) =>
        `${new Date(g.ms).toISOString()} .. ${new Date(g.next_ms).toISOString()}`
      ),
      [],
      `${market}: ${row!.n} final bars over ${row!.span} s; bars missing between these`,
    );
    total += row!.n as number;
  }
  return total;
}
