/**
 * @module Wiring of one upbot process: logging, database, migrations, HTTP server and the
 * supervised actors. `main.ts` calls {@linkcode startUpbot}; tests may too.
 *
 * On PostgreSQL several upbots may share one database (hot standby, `db/lease.ts`): the one that
 * holds the lease is the leader and runs the control directory, the actors and the background
 * jobs; the others serve HTTP (read-only views, `/readyz` 503 `role: "standby"`) and poll the
 * lease every second. A leader that loses its lease (database restarted, session cut, no answer
 * for 5 s) stops its actors and goes back to standby in the same process: it keeps serving HTTP
 * and tries the lease every second; when it takes it again (a new epoch) it starts a fresh
 * leadership, whose executor reconciles before any order. On the embedded PGlite there is one
 * upbot per `DATA_DIR`, always the leader.
 */
import type { Config } from "./config.ts";
import { hasUpbitKeys, isLoopbackHost, secretValues } from "./config.ts";
import { setUpLogging } from "./cli.ts";
import { backoffDelayMs } from "./backoff.ts";
import { UpbotSupervisor, type UpbotSupervisorOptions } from "./pipeline/supervisor.ts";
import {
  ControlDirInUseError,
  controlDirLayout,
  ControlDirWatcher,
} from "./control/command_dir.ts";
import { GLOBAL_SCOPE, haltEntries } from "./control/trading_state.ts";
import { type Client, type Database, type DbConnection, openDatabase } from "./db/connect.ts";
import { actorsRoute } from "./http/actors_route.ts";
import { AlertWebhook } from "./http/alert_webhook.ts";
import { backtestRoutes } from "./http/backtest_routes.ts";
import { createApp } from "./http/app.ts";
import { controlRoutes } from "./http/control_routes.ts";
import { alarmRoutes } from "./http/alarm_routes.ts";
import { dashboardRoutes } from "./http/dashboard_routes.ts";
import { grafanaRoutes } from "./http/grafana_routes.ts";
import { prometheusRoute } from "./http/prometheus.ts";
import { startSampler } from "./http/samples.ts";
import { watchHaltLift } from "./pipeline/halt_lift.ts";
import { webRoutes } from "./http/web_page.tsx";
import { decideTradeMode } from "./execution/guard.ts";
import {
  databaseProblems,
  liveness,
  readiness,
  reconciliationProblems,
  type Role,
  STANDBY_PROBLEM,
  standbyReadiness,
} from "./http/health.ts";
import { Lease, type LeaseFence } from "./db/lease.ts";
import { createLogger, loggingSettings, registerSecret } from "./log.ts";
import { migrate } from "./db/migrate.ts";
import { pipelineActorSpecs } from "./pipeline/actor_specs.ts";
import { clearAlarm, raiseAlarm } from "./store/alarms.ts";
import { retentionPolicy, startRetention } from "./store/retention.ts";

/** A running upbot. */
export interface Upbot {
  /** Base URL of the HTTP server, e.g. `http://127.0.0.1:8501`. */
  readonly httpUrl: string;
  /**
   * The actors' supervisor while this upbot leads.
   *
   * @throws {Error} on a standby (it runs no actor).
   */
  readonly supervisor: UpbotSupervisor;
  /** The main thread's database client (closed by `stop`), e.g. for tests and tools to read. */
  readonly sql: Client;
  /** `leader` while this upbot holds the lease and trades, else `standby`. */
  role(): Role;
  /**
   * Resolves when this upbot can no longer do its job: taking over as leader found its control
   * directory in use by another process. The caller should `stop()` and exit non-zero. (A lost
   * lease is not fatal: the actors stop and this upbot stands by until it can take it again.)
   */
  readonly fatal: Promise<Error>;
  /** Graceful stop: actors (reverse order), HTTP server, then the database. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startUpbot} (tests shorten the supervisor's timings). */
export interface StartOptions {
  supervisor?: Partial<UpbotSupervisorOptions>;
}

/** What a leader runs, stopped in reverse order. */
interface Leadership {
  supervisor: UpbotSupervisor;
  stop(): Promise<void>;
}

/**
 * Starts upbot with a validated configuration. Resolves once the HTTP server listens and, when
 * this upbot got the lease at once (always on PGlite), its actors run; a standby takes over in
 * the background when the lease comes free.
 *
 * @throws {Error} when the database cannot be opened or migrated, or the port is taken;
 *   whatever was already started is stopped again first.
 */
export async function startUpbot(config: Config, options: StartOptions = {}): Promise<Upbot> {
  setUpLogging(config);
  const log = createLogger("main");
  log.info("Boot", {
    markets: config.MARKETS,
    trade_mode: config.UPBIT_TRADE_MODE,
    profile: config.PAPER_POLICY_PROFILE,
    upbit_keys: hasUpbitKeys(config) ? "set" : "not set",
  });
  const db = await openDatabase(config);
  let leadership: Leadership | undefined;
  /** Why this upbot stands by, when not because another upbot holds the lease. */
  let standbyProblem: string | null = null;
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  const lease = db.connection.kind === "url"
    ? new Lease({ connection: db.connection, holder: `${Deno.hostname()} pid ${Deno.pid}` })
    : null;
  const { promise: fatal, resolve: reportFatal } = Promise.withResolvers<Error>();
  let stopping: Promise<void> | null = null;
  try {
    log.info("DB OK", { backend: db.description });
    const dbSecrets = db.connection.kind === "embedded" ? [db.connection.password] : [];
    for (const secret of dbSecrets) registerSecret(secret);
    const result = await migrate(db.sql);
    for (const name of result.applied) log.info(`Applied migration ${name}`);
    log.info("All migrations complete", {
      applied: result.applied.length,
      already: result.skipped.length,
    });
    if (await clearActorHungOfGoneProcess(db)) {
      log.info("Cleared the actor_hung alarm: the process it was raised in no longer runs");
    }
    const startedAt = Date.now();
    const tradeMode = decideTradeMode(config).effective;
    const role = (): Role => leadership ? "leader" : "standby";
    const actors = () => leadership?.supervisor.status() ?? [];
    const wakeExecutor = () => {
      if (leadership?.supervisor.status().some((a) => a.name === "executor")) {
        leadership.supervisor.send("executor", { type: "wake", topic: "trading_state" });
      }
    };
    const app = createApp({
      liveness: async () => ({
        ...await liveness(() => db.sql`select 1`, startedAt),
        role: role(),
      }),
      readiness: async () =>
        leadership
          ? {
            ...readiness(actors(), {
              extraProblems: [
                ...await databaseProblems(() => db.sql`select 1`),
                ...await reconciliationProblems(db.sql, tradeMode).catch(() => []),
              ],
            }),
            role: "leader" as const,
          }
          : {
            ...standbyReadiness(),
            problems: [
              standbyProblem ?? STANDBY_PROBLEM,
              ...await databaseProblems(() => db.sql`select 1`),
            ],
          },
      auth: {
        token: config.API_TOKEN,
        readToken: config.API_READ_TOKEN,
        everywhere: !isLoopbackHost(config.HTTP_HOST),
      },
      routes: [
        actorsRoute({ status: actors }),
        dashboardRoutes({
          sql: db.sql,
          guard: decideTradeMode(config),
          markets: config.MARKETS,
          actors,
          supervisorHalt: () => leadership?.supervisor.haltReason ?? null,
          startedAt,
          role,
        }),
        controlRoutes({ sql: db.sql, log, onChanged: wakeExecutor }),
        alarmRoutes({ sql: db.sql, log }),
        grafanaRoutes({ sql: db.sql, markets: config.MARKETS }),
        backtestRoutes({ sql: db.sql }),
        webRoutes({ markets: config.MARKETS }),
        prometheusRoute({
          sql: db.sql,
          actors,
          supervisorHalted: () => leadership?.supervisor.tradingState === "halted",
          readinessProblems: () => reconciliationProblems(db.sql, tradeMode),
        }),
      ],
    });
    // Bind the port before any actor starts: a taken port must stop start-up before an order
    // could go out.
    server = Deno.serve({
      hostname: config.HTTP_HOST,
      port: config.HTTP_PORT,
      onListen: () => {},
    }, app.fetch);
    const addr = server.addr;
    const httpUrl = `http://${addr.hostname}:${addr.port}`;
    const lead = (fence: LeaseFence | null) =>
      startLeadership(config, options, {
        sql: db.sql,
        connection: fence && db.connection.kind === "url"
          ? { ...db.connection, lease: fence }
          : db.connection,
        secrets: dbSecrets,
        log,
        wakeExecutor,
        endSessions: (applicationName) => db.endSessions(applicationName),
        processTag: db.processTag,
      });
    /** Aborted when `stop` is called: ends the waits of `followLease`. */
    const stopRequested = new AbortController();
    /** Watches the held lease: resolves with the reason once it is lost. */
    const watchLease = (held: Lease) => new Promise<string>((resolve) => held.watch(resolve));
    const fence = lease ? await lease.tryAcquire() : null;
    let leaseLost: Promise<string> | null = null;
    if (!lease || fence) {
      if (lease && fence) {
        log.info(`Lease acquired (epoch ${fence.epoch}): this upbot is the leader`);
        leaseLost = watchLease(lease);
      }
      leadership = await lead(fence);
    } else {
      log.warn(
        `Standby: another upbot holds the lease on ${db.description}; serving HTTP and taking over when it goes`,
      );
    }
    /**
     * The lease's life in this process: while leading, wait for a loss, then stop the actors
     * and wait as a standby again; while standing by, try the lease every second and lead
     * again when it is taken (a new epoch, a fresh leadership that reconciles before any order).
     */
    const followLease = async (held: Lease, lost: Promise<string> | null) => {
      let failures = 0;
      while (!stopping) {
        if (lost) {
          const reason = await unlessAborted(lost, stopRequested.signal);
          if (stopping || reason === undefined) return;
          log.error("Lease LOST: stopping the trading actors", { reason });
          const stopped = leadership;
          leadership = undefined;
          standbyProblem =
            `this upbot lost its lease (${reason}); it is the standby until it can take the lease again`;
          await stopped?.stop();
          log.warn(
            `Standby: this upbot lost its lease on ${db.description}; its trading actors are stopped, it serves HTTP and tries to take the lease again every second`,
          );
          lost = null;
        }
        const taken = await held.acquire((err) =>
          log.warn("Standby: could not try the lease; trying again", { error: err.message })
        );
        if (!taken || stopping) return;
        log.info(`Lease acquired (epoch ${taken.epoch}): this upbot takes over as leader`);
        const nextLost = watchLease(held);
        try {
          const started = await lead(taken);
          if (stopping) return await started.stop();
          leadership = started;
          standbyProblem = null;
          failures = 0;
          lost = nextLost;
        } catch (err) {
          await held.drop();
          if (err instanceof ControlDirInUseError) {
            log.error("taking over as leader failed", { error: err.message });
            reportFatal(err);
            return;
          }
          // Another standby may take the lease meanwhile; this one tries again, less often.
          failures++;
          const pauseMs = Math.min(30_000, 1000 * 2 ** failures);
          // Not the error's text: /readyz is public, and it may name paths or hosts.
          standbyProblem =
            "taking over as leader failed (see the log); this upbot is the standby and tries again";
          log.error("taking over as leader failed; giving the lease up and trying again", {
            error: (err as Error).message,
            retry_in_ms: pauseMs,
          });
          await pause(pauseMs, stopRequested.signal);
        }
      }
    };
    const following = lease ? followLease(lease, leaseLost) : Promise.resolve();
    log.info(`HTTP server listening on ${httpUrl}`, { role: role() });
    const listening = server;
    return {
      httpUrl,
      get supervisor() {
        if (!leadership) throw new Error("this upbot is not the leader: it runs no actor");
        return leadership.supervisor;
      },
      sql: db.sql,
      role,
      fatal,
      stop() {
        stopping ??= (async () => {
          stopRequested.abort();
          const held = leadership;
          leadership = undefined;
          await held?.stop();
          // Ends a standby's polling; a leadership still starting is stopped by `following`.
          await lease?.release();
          await following;
          await listening.shutdown();
          await db.close();
        })();
        return stopping;
      },
    };
  } catch (err) {
    // startLeadership stops what it started when it throws.
    await leadership?.stop();
    await lease?.release();
    await server?.shutdown();
    await db.close();
    throw err;
  }
}

/**
 * Clears the active `actor_hung` alarm once the process it was raised in is gone (with it the
 * thread that kept spinning): that process no longer has a session on the database
 * (`Database.processConnected`). Runs once per process, before it first leads: a process that
 * leads again keeps its own alarm. Returns whether it cleared one.
 */
async function clearActorHungOfGoneProcess(db: Database): Promise<boolean> {
  const [alarm] = await db.sql<{ details: { process?: unknown } | null }[]>`
    select details from alarms where code = 'actor_hung' and cleared_at is null`;
  if (alarm === undefined) return false;
  const tag = alarm.details?.process;
  if (typeof tag === "string" && await db.processConnected(tag)) return false;
  await clearAlarm(db.sql, "actor_hung");
  return true;
}

/** What {@linkcode startLeadership} needs from the process. */
interface LeaderDeps {
  sql: Client;
  /** The actors' connection; on PostgreSQL it carries the lease's fence. */
  connection: DbConnection;
  secrets: string[];
  log: ReturnType<typeof createLogger>;
  wakeExecutor: () => void;
  /** Ends a terminated actor's database sessions (`Database.endSessions`). */
  endSessions: (applicationName: string) => Promise<number>;
  /** `Database.processTag`. */
  processTag: string;
}

/**
 * Starts what only the leader runs: the control directory (queued commands apply before any
 * actor starts), the supervised actors, alerts, samples and retention.
 *
 * @throws {Error} when the control directory cannot be used or an actor cannot start; whatever
 *   was started is stopped again first.
 */
async function startLeadership(
  config: Config,
  options: StartOptions,
  deps: LeaderDeps,
): Promise<Leadership> {
  const { sql, log } = deps;
  /** Halts and alarms being stored (awaited before the database closes). */
  const pendingWrites = new Set<Promise<void>>();
  /** Aborted when the leadership stops: retried writes then give up after one last attempt. */
  const writesEnd = new AbortController();
  /**
   * Stores what the supervisor's callbacks report (its halt, the actor_hung alarm) without holding
   * them up: `write` is tried again with a capped backoff (1 s doubling to 30 s) until it succeeds
   * or the leadership stops; a halt kept only in memory would be lifted by a restart.
   */
  const keepWriting = (what: string, write: () => Promise<unknown>) => {
    const kept: Promise<void> = (async () => {
      for (let failures = 0;; failures++) {
        try {
          await write();
          if (failures > 0) log.info(`Stored ${what} after ${failures} failed attempt(s)`);
          return;
        } catch (err) {
          const error = (err as Error).message;
          if (writesEnd.signal.aborted) {
            log.error(`could not store ${what}; upbot is stopping, so it is not stored`, { error });
            return;
          }
          const delayMs = backoffDelayMs(Math.min(failures, 20), {
            baseMs: 1_000,
            maxMs: 30_000,
            jitter: 0,
          });
          log.warn(`could not store ${what}; trying again in ${delayMs / 1000} s`, { error });
          await pause(delayMs, writesEnd.signal);
        }
      }
    })().finally(() => pendingWrites.delete(kept));
    pendingWrites.add(kept);
  };
  const layout = controlDirLayout(config.DATA_DIR);
  const control = new ControlDirWatcher({ layout, sql, onApplied: () => deps.wakeExecutor() });
  let supervisor: UpbotSupervisor | undefined;
  let alerts: AlertWebhook | undefined;
  const haltLift = watchHaltLift(sql, {
    halted: () => supervisor?.tradingState === "halted",
    resume: (by) => supervisor?.resume(`the global halt resumed by ${by}`),
    criticalDown: () =>
      supervisor?.status().filter((a) => a.critical && a.state !== "running").map((a) => a.name) ??
        [],
  }, log);
  try {
    try {
      await control.claim();
      const applied = await control.processInbox();
      if (applied > 0) log.info(`Applied ${applied} queued control command(s)`);
    } catch (err) {
      if (err instanceof ControlDirInUseError) throw err;
      throw new Error(
        `the control directory ${layout.root} cannot be used (set DATA_DIR to a writable directory): ${
          (err as Error).message
        }`,
        { cause: err },
      );
    }
    control.start();
    supervisor = new UpbotSupervisor({
      actors: pipelineActorSpecs(config, deps.connection),
      log: loggingSettings(),
      secrets: [...secretValues(config), ...deps.secrets],
      onTradingHalt: (reason, actor) => {
        log.error("Trading HALTED", { reason, actor: actor ?? undefined });
        haltLift.halting();
        // Stored too, so the halt survives a restart until a person resumes it; the resume
        // lifts this process's halt too (watchHaltLift).
        keepWriting("the supervisor's halt", async () => {
          await haltEntries(sql, { scope: GLOBAL_SCOPE, reason, by: "supervisor" });
          haltLift.stored();
          log.warn(
            "Entries halted globally (stored, survives restarts); once the cause is fixed, lift it with: deno task resume",
          );
        });
      },
      processTag: deps.processTag,
      endSessions: deps.endSessions,
      onActorHung: (actors, message) => {
        keepWriting("the actor_hung alarm", () =>
          raiseAlarm(sql, {
            code: "actor_hung",
            message,
            details: { actors, process: deps.processTag, hostname: Deno.hostname(), pid: Deno.pid },
          }));
      },
      ...options.supervisor,
    });
    await supervisor.start();
    // Inside the clean-up: a failed start (the database refusing its first read) must not leave
    // the actors and the control directory's lock behind (a retried takeover in this process
    // would find its own lock taken).
    if (config.ALERT_WEBHOOK_URL) {
      alerts = new AlertWebhook({ sql, url: config.ALERT_WEBHOOK_URL, log });
      await alerts.start();
    }
  } catch (err) {
    await haltLift.stop();
    await alerts?.stop();
    await control.stop();
    await supervisor?.stop("start-up failed");
    writesEnd.abort();
    await Promise.all(pendingWrites);
    throw err;
  }
  const running = supervisor;
  const stopSampler = startSampler(sql, {
    actors: () => running.status(),
    supervisorHalted: () => running.tradingState === "halted",
  }, log);
  const stopRetention = startRetention(sql, retentionPolicy(config), log, {
    intervalMs: config.RETENTION_INTERVAL_MIN * 60_000,
  });
  let stopping: Promise<void> | null = null;
  return {
    supervisor: running,
    stop() {
      stopping ??= (async () => {
        await control.stop();
        await haltLift.stop();
        await running.stop("shutdown");
        writesEnd.abort();
        await Promise.all(pendingWrites);
        await stopSampler();
        await stopRetention();
        await alerts?.stop();
      })();
      return stopping;
    },
  };
}

/**
 * What `promise` resolves to, or undefined as soon as `signal` is aborted (at once if it is);
 * leaves no listener on `signal` behind.
 */
async function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return undefined;
  let onAbort = () => {};
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Waits `ms`, or less when `signal` is aborted first; leaves no timer behind. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await unlessAborted(new Promise((resolve) => timer = setTimeout(resolve, ms)), signal);
  } finally {
    clearTimeout(timer);
  }
}
