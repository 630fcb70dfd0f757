/**
 * @module Wiring of one upbot process: logging, database, migrations, HTTP server (and, as they
 * land, the supervised actors). `main.ts` calls {@linkcode startUpbot}; tests may too.
 */
import type { Config } from "./config.ts";
import { hasUpbitKeys, secretValues } from "./config.ts";
import { openDatabase } from "./db.ts";
import { createApp } from "./http/app.ts";
import { configureLogging, createLogger, registerSecret } from "./log.ts";
import { migrate } from "./migrate.ts";

/** A running upbot. */
export interface Upbot {
  /** Base URL of the HTTP server, e.g. `http://127.0.0.1:8501`. */
  readonly httpUrl: string;
  /** Graceful stop: HTTP server, then the database (and the embedded PGlite). Idempotent. */
  stop(): Promise<void>;
}

/** Applies `LOG_LEVEL` / `LOG_FORMAT` and masks every secret of `config` in this thread's logs. */
export function setUpLogging(config: Config): void {
  const format = config.LOG_FORMAT === "auto"
    ? (Deno.stdout.isTerminal() ? "pretty" : "json")
    : config.LOG_FORMAT;
  configureLogging({ level: config.LOG_LEVEL, format });
  for (const secret of secretValues(config)) registerSecret(secret);
}

/**
 * Starts upbot with a validated configuration.
 *
 * @throws {Error} when the database cannot be opened or migrated, or the port is taken;
 *   whatever was already started is stopped again first.
 */
export async function startUpbot(config: Config): Promise<Upbot> {
  setUpLogging(config);
  const log = createLogger("main");
  log.info("Boot", {
    markets: config.MARKETS,
    trade_mode: config.UPBIT_TRADE_MODE,
    profile: config.PAPER_POLICY_PROFILE,
    upbit_keys: hasUpbitKeys(config) ? "set" : "not set",
  });
  const db = await openDatabase(config);
  try {
    log.info("DB OK", { backend: db.description });
    const result = await migrate(db.sql);
    for (const name of result.applied) log.info(`Applied migration ${name}`);
    log.info("All migrations complete", {
      applied: result.applied.length,
      already: result.skipped.length,
    });
    const startedAt = Date.now();
    const app = createApp({
      health: async () => {
        let dbOk = true;
        try {
          await db.sql`select 1`;
        } catch {
          dbOk = false;
        }
        return {
          ok: dbOk,
          db: dbOk ? "ok" : "unreachable",
          uptime_sec: Math.round((Date.now() - startedAt) / 1000),
        };
      },
    });
    const server = Deno.serve({
      hostname: config.HTTP_HOST,
      port: config.HTTP_PORT,
      onListen: () => {},
    }, app.fetch);
    const addr = server.addr;
    const httpUrl = `http://${addr.hostname}:${addr.port}`;
    log.info(`HTTP server listening on ${httpUrl}`);
    let stopping: Promise<void> | null = null;
    return {
      httpUrl,
      stop() {
        stopping ??= (async () => {
          await server.shutdown();
          await db.close();
        })();
        return stopping;
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}
