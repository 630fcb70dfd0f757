/**
 * @module A running upbot (HTTP port 0, fresh database of a backend) pointed at a running
 * simulator, for the HTTP tests. Workers log at `error` only; main-thread lines are captured.
 */
import { parseConfig } from "../lib/config.ts";
import { LIVE_GUARD_PHRASE } from "../lib/execution/guard.ts";
import { configureLogging, loggingSettings, setLogSink } from "../lib/log.ts";
import { startUpbot, type Upbot } from "../lib/upbot.ts";
import {
  DEFAULT_ACCESS_KEY,
  DEFAULT_SECRET_KEY,
  type Simulator,
  startSimulator,
} from "../sim/mod.ts";
import { openTestDatabase } from "./_db.ts";

/**
 * upbot's variables for live mode on the simulator with a strategy that trades at once: all five
 * guard conditions with the simulator's keys, the default policy with an entry threshold nothing
 * falls below and no skill gate (it would wait half an hour for labels), ±5 % barriers over 3 s,
 * fast polls and a high order cap. Tests spread it and add or override what they need.
 */
export const LIVE_ENV: Readonly<Record<string, string>> = Object.freeze({
  UPBIT_ACCESS_KEY: DEFAULT_ACCESS_KEY,
  UPBIT_SECRET_KEY: DEFAULT_SECRET_KEY,
  LIVE_TRADING_ENABLED: "true",
  UPBIT_TRADE_MODE: "live",
  LIVE_GUARD_PHRASE,
  PAPER_POLICY_PROFILE: "default",
  EVAL_ENTRY_EV_MIN: "-100",
  EVAL_SKILL_GATE: "off",
  EVAL_TP_PCT: "0.05",
  EVAL_SL_PCT: "0.05",
  EVAL_HORIZON_SEC: "3",
  LIVE_ORDER_POLL_INTERVAL_SEC: "0.2",
  ACCOUNT_POLL_INTERVAL_SEC: "1",
  MAX_ORDERS_PER_MIN: "600",
});

/** upbot + simulator; dispose stops both and removes the database. */
export interface UpbotRig {
  sim: Simulator;
  upbot: Upbot;
  /** e.g. `http://127.0.0.1:40123` */
  url: string;
  /** Main-thread log lines. */
  lines: string[];
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts a simulator and an upbot on `backend` with `env` on top of the defaults. */
export async function startUpbotRig(
  backend: string,
  env: Record<string, string> = {},
  markets: string[] = ["KRW-BTC", "KRW-ETH"],
): Promise<UpbotRig> {
  const lines: string[] = [];
  const previousLog = loggingSettings();
  const restoreSink = setLogSink((line) => lines.push(line));
  const cleanups: (() => Promise<void> | void)[] = [() => {
    restoreSink();
    configureLogging(previousLog);
  }];
  const cleanUp = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    const sim = await startSimulator({ seed: 7, markets, rate: 200 });
    cleanups.push(() => sim.close());
    let dbEnv: Record<string, string>;
    if (backend === "pglite") {
      const dir = await Deno.makeTempDir({ prefix: "upbot_http_" });
      cleanups.push(() => Deno.remove(dir, { recursive: true }));
      dbEnv = { DATA_DIR: dir };
    } else {
      const db = await openTestDatabase(backend);
      cleanups.push(() => db.close());
      dbEnv = { DATABASE_URL: db.connection.kind === "url" ? db.connection.url : "" };
    }
    const config = parseConfig({
      HTTP_PORT: "0",
      LOG_LEVEL: "info",
      LOG_FORMAT: "json",
      MARKETS: markets.join(","),
      UPBIT_REST_URL: sim.restUrl,
      UPBIT_WS_URL: sim.wsUrl,
      PAPER_POLICY_PROFILE: "test",
      ...dbEnv,
      ...env,
    });
    const upbot = await startUpbot(config, {
      supervisor: {
        log: { level: "error", format: "json" },
        restartMinDelayMs: 200,
        restartMaxDelayMs: 2_000,
        restartJitter: 0,
        shutdownTimeoutMs: 3_000,
        statusLogIntervalMs: 0,
      },
    });
    cleanups.push(() => upbot.stop());
    return { sim, upbot, url: upbot.httpUrl, lines, [Symbol.asyncDispose]: cleanUp };
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

/** Polls `check` every 100 ms until it returns a value other than undefined/false. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}${last ? ` (last error: ${last})` : ""}`);
}
