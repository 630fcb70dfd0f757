/**
 * @module Wiring of one upbot process: logging, database, migrations, HTTP server (and, as they
 * land, the supervised actors). `main.ts` calls {@linkcode startUpbot}; tests may too.
 */
import type { Config } from "./config.ts";
import { hasUpbitKeys, secretValues } from "./config.ts";
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
import { createApp } from "./http/app.ts";
import { createLogger, loggingSettings, registerSecret } from "./log.ts";
import { migrate } from "./migrate.ts";
import { pipelineActorSpecs } from "./pipeline/actor_specs.ts";

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
    // Halt, resume and flatten commands queued while upbot was down apply before any actor
    // starts; then the control directory is polled (see lib/control/command_dir.ts).
    const layout = controlDirLayout(config.DATA_DIR);
    control = new ControlDirWatcher({
      layout,
      sql: db.sql,
      onApplied: () => {
        if (supervisor?.status().some((a) => a.name === "executor")) {
          supervisor.send("executor", { type: "wake", topic: "trading_state" });
        }
      },
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
      health: async () => {
        let dbOk = true;
        try {
          await db.sql`select 1`;
        } catch {
          dbOk = false;
        }
        const actors = supervisor!.health();
        return {
          ok: dbOk && actors.healthy,
          db: dbOk ? "ok" : "unreachable",
          trading: actors.tradingState,
          halt_reason: actors.haltReason,
          failed_actors: actors.failed,
          uptime_sec: Math.round((Date.now() - startedAt) / 1000),
        };
      },
      routes: [actorsRoute(supervisor!)],
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
    log.info(`HTTP server listening on ${httpUrl}`);
    let stopping: Promise<void> | null = null;
    const running = supervisor;
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
