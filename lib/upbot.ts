/**
 * @module Wiring of one upbot process: logging, database, migrations, HTTP server (and, as they
 * land, the supervised actors). `main.ts` calls {@linkcode startUpbot}; tests may too.
 */
import type { Config } from "./config.ts";
import { hasUpbitKeys, isLoopbackHost, secretValues } from "./config.ts";
import { setUpLogging } from "./cli.ts";
import { Supervisor } from "./actors/supervisor.ts";
import {
  ControlDirInUseError,
  controlDirLayout,
  ControlDirWatcher,
} from "./control/command_dir.ts";
import { GLOBAL_SCOPE, haltEntries } from "./control/trading_state.ts";
import { type Client, openDatabase } from "./db.ts";
import { actorsRoute } from "./http/actors_route.ts";
import { AlertWebhook } from "./http/alert_webhook.ts";
import { createApp } from "./http/app.ts";
import { controlRoutes } from "./http/control_routes.ts";
import { dashboardRoutes } from "./http/dashboard_routes.ts";
import { grafanaRoutes } from "./http/grafana_routes.ts";
import { prometheusRoute } from "./http/prometheus.ts";
import { startSampler } from "./http/samples.ts";
import { webRoutes } from "./http/web_page.tsx";
import { decideTradeMode } from "./execution/guard.ts";
import { liveness, readiness, reconciliationProblems } from "./http/health.ts";
import { createLogger, loggingSettings, registerSecret } from "./log.ts";
import { migrate } from "./migrate.ts";
import { pipelineActorSpecs } from "./pipeline/actor_specs.ts";
import { retentionPolicy, startRetention } from "./store/retention.ts";

/** A running upbot. */
export interface Upbot {
  /** Base URL of the HTTP server, e.g. `http://127.0.0.1:8501`. */
  readonly httpUrl: string;
  readonly supervisor: Supervisor;
  /** The main thread's database client (closed by `stop`), e.g. for tests and tools to read. */
  readonly sql: Client;
  /** Graceful stop: actors (reverse order), HTTP server, then the database. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startUpbot} (tests shorten the supervisor's timings). */
export interface StartOptions {
  supervisor?: Partial<ConstructorParameters<typeof Supervisor>[0]>;
}

/**
 * Starts upbot with a validated configuration.
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
  let supervisor: Supervisor | undefined;
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  let control: ControlDirWatcher | undefined;
  /** Stored halts under way (awaited before the database closes). */
  const haltWrites = new Set<Promise<void>>();
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
    const wakeExecutor = () => {
      if (supervisor?.status().some((a) => a.name === "executor")) {
        supervisor.send("executor", { type: "wake", topic: "trading_state" });
      }
    };
    // Halt, resume and flatten commands queued while upbot was down apply before any actor
    // starts; then the control directory is polled (see lib/control/command_dir.ts).
    const layout = controlDirLayout(config.DATA_DIR);
    control = new ControlDirWatcher({
      layout,
      sql: db.sql,
      onApplied: () => wakeExecutor(),
    });
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
    const startedAt = Date.now();
    const tradeMode = decideTradeMode(config).effective;
    supervisor = new Supervisor({
      actors: pipelineActorSpecs(config, db.connection),
      log: loggingSettings(),
      secrets: [...secretValues(config), ...dbSecrets],
      onTradingHalt: (reason, actor) => {
        log.error("Trading HALTED", { reason, actor: actor ?? undefined });
        // Stored too, so the halt survives a restart until a person resumes it.
        const write = haltEntries(db.sql, { scope: GLOBAL_SCOPE, reason, by: "supervisor" })
          .then(
            () =>
              log.warn(
                "Entries halted globally (stored, survives restarts); once the cause is fixed and upbot restarted, lift it with: deno task resume",
              ),
            (err) =>
              log.error("could not store the supervisor's halt", {
                error: (err as Error).message,
              }),
          )
          .finally(() => haltWrites.delete(write));
        haltWrites.add(write);
      },
      ...options.supervisor,
    });
    const app = createApp({
      liveness: () => liveness(() => db.sql`select 1`, startedAt),
      readiness: async () =>
        readiness(supervisor!.status(), {
          extraProblems: await reconciliationProblems(db.sql, tradeMode),
        }),
      auth: { token: config.API_TOKEN, everywhere: !isLoopbackHost(config.HTTP_HOST) },
      routes: [
        actorsRoute(supervisor!),
        dashboardRoutes({
          sql: db.sql,
          guard: decideTradeMode(config),
          markets: config.MARKETS,
          actors: () => supervisor!.status(),
          supervisorHalt: () => supervisor!.haltReason,
          startedAt,
        }),
        controlRoutes({ sql: db.sql, log, onChanged: wakeExecutor }),
        grafanaRoutes({ sql: db.sql, markets: config.MARKETS }),
        webRoutes({ markets: config.MARKETS }),
        prometheusRoute({
          sql: db.sql,
          actors: () => supervisor!.status(),
          supervisorHalted: () => supervisor!.tradingState === "halted",
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
    await supervisor.start();
    const running = supervisor;
    let alerts: AlertWebhook | undefined;
    if (config.ALERT_WEBHOOK_URL) {
      alerts = new AlertWebhook({ sql: db.sql, url: config.ALERT_WEBHOOK_URL, log });
      await alerts.start();
    }
    const stopSampler = startSampler(db.sql, {
      actors: () => running.status(),
      supervisorHalted: () => running.tradingState === "halted",
    }, log);
    const stopRetention = startRetention(db.sql, retentionPolicy(config), log, {
      intervalMs: config.RETENTION_INTERVAL_MIN * 60_000,
    });
    log.info(`HTTP server listening on ${httpUrl}`);
    let stopping: Promise<void> | null = null;
    const listening = server;
    const watcher = control;
    return {
      httpUrl,
      supervisor: running,
      sql: db.sql,
      stop() {
        stopping ??= (async () => {
          await watcher.stop();
          await running.stop("shutdown");
          await Promise.all(haltWrites);
          await stopSampler();
          await stopRetention();
          await alerts?.stop();
          await listening.shutdown();
          await db.close();
        })();
        return stopping;
      },
    };
  } catch (err) {
    await control?.stop();
    await supervisor?.stop("start-up failed");
    await Promise.all(haltWrites);
    await server?.shutdown();
    await db.close();
    throw err;
  }
}
