/**
 * @module The crash suite (`deno task chaos`, tests/chaos_test.ts): upbot runs in live mode as a
 * process against a simulator process whose exchange outlives restarts (`--state`), with faults
 * on; it is killed with SIGKILL at seeded random moments and restarted on the same database,
 * then the faults stop, a flatten is requested, and once everything has settled the database is
 * compared with the simulator ({@linkcode checkCrashFacts}).
 */
import { join } from "node:path";
import { controlDirLayout, enqueueControlCommand } from "../control/command_dir.ts";
import { newControlCommand } from "../control/commands.ts";
import { openDatabase } from "../db/connect.ts";
import { dec, formatDec } from "../decimal.ts";
import { ledgerPositions } from "../execution/position_ledger.ts";
import { installationId } from "../store/order_attempts.ts";
import { UpbitRest } from "../upbit/rest.ts";
import {
  type AttemptFacts,
  checkCrashFacts,
  type CheckResult,
  type ExchangeOrder,
} from "./checks.ts";
import { mulberry32 } from "../random.ts";
import { freePort, type RunningProcess, spawnDeno } from "../subprocess.ts";

/** Settings of one crash-suite run. */
export interface CrashSuiteOptions {
  /** SIGKILLs of the upbot process. */
  kills: number;
  /** Seed of the kill moments and of the simulator. */
  seed: number;
  /** Bounds of how long upbot runs before each kill (from its start), in ms. */
  upMs: [number, number];
  /** PostgreSQL database for upbot (empty); the embedded PGlite under the run's DATA_DIR when absent. */
  databaseUrl?: string;
  /** Where the state file, DATA_DIR and logs go; a fresh temp dir when absent (kept, for post-mortems). */
  workDir?: string;
  /** How long to wait for the book to go flat after the faults stop, in ms. */
  settleTimeoutMs?: number;
  /** Progress lines. */
  progress?: (line: string) => void;
}

/** What a run did and found. */
export interface CrashSuiteReport {
  kills: number;
  /** Kills that happened before upbot's HTTP server was up (during start-up). */
  killsDuringStartup: number;
  /** Orders upbot created on the exchange over the run. */
  exchangeOrders: number;
  results: CheckResult[];
  ok: boolean;
  workDir: string;
  /** Wall time of the run in seconds. */
  seconds: number;
}

/** The markets traded. */
export const MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"];
/** The owner's own coins (upbot must never sell them). */
export const OWNER_COINS: Record<string, string> = {
  "KRW-BTC": "0.05",
  "KRW-ETH": "1.5",
  "KRW-XRP": "300",
};
/** The market that goes offline for a while in every other cycle. */
const FLAKY_MARKET = "KRW-XRP";
const ACCESS_KEY = "chaos-access-key";
const SECRET_KEY = "chaos-secret-key-0123456789abcdef0123456789abcdef";

/** Faults while upbot is being killed: lost answers, 5xx before and after create, burns, 429s, WS drops. */
export const CHAOS_FAULTS = {
  lost_response_rate: 0.08,
  error_rate: 0.05,
  server_error_after_create_rate: 0.05,
  server_error_burn_rate: 0.03,
  rate_limit_factor: 0.3,
  ws_disconnect_every_sec: 9,
  latency_ms: 20,
};

const NO_FAULTS = {
  lost_response_rate: 0,
  error_rate: 0,
  server_error_after_create_rate: 0,
  server_error_burn_rate: 0,
  rate_limit_factor: 1,
  ws_disconnect_every_sec: 0,
  latency_ms: 0,
  offline_markets: [],
};

const REPO = new URL("../../", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs the crash suite; the report's `ok` is false when any check failed. */
export async function runCrashSuite(o: CrashSuiteOptions): Promise<CrashSuiteReport> {
  const started = Date.now();
  const say = o.progress ?? (() => {});
  const random = mulberry32(o.seed);
  const workDir = o.workDir ?? await Deno.makeTempDir({ prefix: "upbot_chaos_" });
  const dataDir = join(workDir, "data");
  await Deno.mkdir(dataDir, { recursive: true });
  const simPort = freePort();
  const sim = spawnDeno([
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-write",
    "sim/main.ts",
    "--port",
    String(simPort),
    "--seed",
    String(o.seed),
    "--markets",
    MARKETS.join(","),
    "--rate",
    "30",
    "--volatility-scale",
    "4",
    "--history-days",
    "0",
    "--access-key",
    ACCESS_KEY,
    "--secret-key",
    SECRET_KEY,
    "--balances",
    Object.entries(OWNER_COINS).map(([m, v]) => `${m}=${v}`).join(","),
    "--state",
    join(workDir, "exchange.json"),
  ], { cwd: REPO, env: { LOG_FORMAT: "json" }, logFile: join(workDir, "sim.log"), keepLines: 400 });
  const simUrl = `http://127.0.0.1:${simPort}`;
  let upbot: RunningProcess | null = null;
  try {
    await sim.waitForLine(/simulator started/, 60_000);
    const setFaults = (faults: Record<string, unknown>) => setSimFaults(simUrl, faults);
    const httpPort = freePort();
    const env = liveUpbotEnv({
      httpPort,
      dataDir,
      databaseUrl: o.databaseUrl,
      restUrl: simUrl,
      wsUrl: `ws://127.0.0.1:${simPort}/websocket/v1`,
      accessKey: ACCESS_KEY,
      secretKey: SECRET_KEY,
    });
    let run = 0;
    const startUpbot = () => {
      run++;
      return spawnDeno(
        ["run", "--unstable-worker-options", "--allow-all", "main.ts"],
        {
          cwd: REPO,
          env,
          logFile: join(workDir, `upbot-${String(run).padStart(2, "0")}.log`),
          keepLines: 400,
        },
      );
    };
    const listening = /HTTP server listening/;

    await setFaults(CHAOS_FAULTS);
    let killsDuringStartup = 0;
    for (let i = 1; i <= o.kills; i++) {
      const offline = i % 2 === 0;
      await setFaults({ offline_markets: offline ? [FLAKY_MARKET] : [] });
      upbot = startUpbot();
      const upMs = Math.round(o.upMs[0] + random() * (o.upMs[1] - o.upMs[0]));
      if (i === 1) {
        // Kills before the first order would only test start-up: let it trade once (the evaluator
        // needs some seconds of bars), then kill it at a random moment after that.
        const deadline = Date.now() + 180_000;
        while ((await simOrders(simUrl)).length === 0) {
          if (Date.now() > deadline) throw new Error("upbot placed no order within 180 s");
          await sleep(500);
        }
      }
      await sleep(upMs);
      const up = upbot.lines.some((l) => listening.test(l));
      if (!up) killsDuringStartup++;
      const status = await upbot.stop("SIGKILL");
      upbot = null;
      if (status.signal !== "SIGKILL") {
        throw new Error(`upbot run ${run} ended by itself (code ${status.code}) before kill ${i}`);
      }
      say(
        `kill ${i}/${o.kills} after ${upMs} ms${up ? "" : " (during start-up)"}${
          offline ? `, ${FLAKY_MARKET} offline` : ""
        }`,
      );
    }

    const ordersUnderFaults = (await simOrders(simUrl)).length;
    say(`faults off after ${ordersUnderFaults} exchange orders; settling`);
    await setFaults(NO_FAULTS);
    upbot = startUpbot();
    await upbot.waitForLine(listening, 120_000);
    // Let the order path resolve what the kills left in flight before closing everything.
    await sleep(3_000);
    const api = `http://127.0.0.1:${httpPort}`;
    if (!(await flattenAndSettle(dataDir, api, simUrl, o.settleTimeoutMs ?? 120_000))) {
      say("not settled in time; checking anyway (the checks will say what is left)");
    }
    const status = await upbot.stop("SIGTERM");
    upbot = null;
    if (status.code !== 0) say(`upbot exited with code ${status.code} on SIGTERM`);

    const exchangeOrders = await simOrders(simUrl);
    const results = await checkAgainstExchange({
      restUrl: simUrl,
      accessKey: ACCESS_KEY,
      secretKey: SECRET_KEY,
      dataDir,
      databaseUrl: o.databaseUrl,
    });
    // A run in which nothing was traded under faults proves nothing.
    results.unshift({
      name: "upbot traded while being killed",
      ok: ordersUnderFaults > 0,
      detail: `${ordersUnderFaults} exchange orders before the faults stopped`,
    });
    return {
      kills: o.kills,
      killsDuringStartup,
      exchangeOrders: exchangeOrders.length,
      results,
      ok: results.every((r) => r.ok),
      workDir,
      seconds: Math.round((Date.now() - started) / 1000),
    };
  } finally {
    if (upbot) await upbot.stop("SIGKILL");
    await sim.stop("SIGTERM");
  }
}

/** True when upbot owns no position, has no order open and no attempt unresolved. */
async function settled(api: string, simUrl: string): Promise<boolean> {
  try {
    const account = await (await fetch(`${api}/api/account`)).json() as {
      positions: { qty: number }[];
    };
    if (account.positions.some((p) => p.qty > 0)) return false;
    for (const status of ["pending", "unknown", "submitted"]) {
      const rows = await (await fetch(`${api}/api/attempts?status=${status}&limit=1`)).json();
      if (!Array.isArray(rows) || rows.length > 0) return false;
    }
    const orders = await simOrders(simUrl);
    return !orders.some((order) => order.state === "wait");
  } catch {
    return false;
  }
}

/** Every order of the simulator (`GET /_sim/orders`). */
async function simOrders(simUrl: string): Promise<ExchangeOrder[]> {
  const res = await fetch(`${simUrl}/_sim/orders`);
  if (!res.ok) throw new Error(`GET /_sim/orders answered ${res.status}`);
  return await res.json() as ExchangeOrder[];
}

/** Where upbot runs and what it trades with, for {@linkcode liveUpbotEnv}. */
export interface LiveUpbotSite {
  httpPort: number;
  dataDir: string;
  /** PostgreSQL; the embedded PGlite under `dataDir` when absent. */
  databaseUrl?: string;
  restUrl: string;
  wsUrl: string;
  accessKey: string;
  secretKey: string;
}

/**
 * The environment of an upbot that trades live, and often: all five guard conditions, the
 * default policy with an entry threshold nothing falls below, a short horizon, risk limits out
 * of the way, fast polls.
 */
export function liveUpbotEnv(site: LiveUpbotSite): Record<string, string> {
  return {
    HTTP_PORT: String(site.httpPort),
    LOG_FORMAT: "json",
    LOG_LEVEL: "info",
    DATA_DIR: site.dataDir,
    ...(site.databaseUrl ? { DATABASE_URL: site.databaseUrl } : {}),
    MARKETS: MARKETS.join(","),
    UPBIT_REST_URL: site.restUrl,
    UPBIT_WS_URL: site.wsUrl,
    UPBIT_ACCESS_KEY: site.accessKey,
    UPBIT_SECRET_KEY: site.secretKey,
    // This simulator creates an order as the request arrives (no create_delay_ms fault), so no
    // create lands late: a short landing wait keeps entries under 5xx faults from waiting a minute.
    EXECUTOR_LANDING_WAIT_SEC: "2",
    UPBIT_TRADE_MODE: "live",
    LIVE_TRADING_ENABLED: "true",
    LIVE_GUARD_PHRASE: "I_CONFIRM_LIVE_TRADING",
    PAPER_POLICY_PROFILE: "default",
    EVAL_ENTRY_EV_MIN: "-100",
    EVAL_SKILL_GATE: "off",
    EVAL_HORIZON_SEC: "20",
    ORDER_KRW_AMOUNT: "10000",
    MAX_ORDERS_PER_MIN: "120",
    RISK_MAX_ORDER_KRW: "50000",
    RISK_MAX_OPEN_POSITIONS: "10",
    RISK_MAX_EXPOSURE_KRW: "1000000",
    RISK_MAX_DAILY_LOSS_KRW: "1000000",
    LIVE_ORDER_POLL_INTERVAL_SEC: "1",
    ACCOUNT_POLL_INTERVAL_SEC: "2",
  };
}

/** Merges `faults` into the simulator's (`POST /_sim/faults`). */
export async function setSimFaults(simUrl: string, faults: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${simUrl}/_sim/faults`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(faults),
  });
  if (!res.ok) throw new Error(`POST /_sim/faults answered ${res.status}: ${await res.text()}`);
  await res.body?.cancel();
}

/**
 * Queues a flatten in the control directory of the upbot serving `api`, then waits until it
 * owns nothing, has nothing open and nothing unresolved; false when `timeoutMs` ran out first.
 */
export async function flattenAndSettle(
  dataDir: string,
  api: string,
  simUrl: string,
  timeoutMs: number,
): Promise<boolean> {
  await enqueueControlCommand(
    controlDirLayout(dataDir),
    newControlCommand({ action: "flatten", reason: "chaos suite end" }),
  );
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await settled(api, simUrl)) return true;
    await sleep(1_000);
  }
  return false;
}

/**
 * Reads the exchange (orders, balances) and the stopped upbot's database and runs
 * {@linkcode checkCrashFacts} (the owner's coins are {@linkcode OWNER_COINS}).
 */
export async function checkAgainstExchange(o: {
  restUrl: string;
  accessKey: string;
  secretKey: string;
  dataDir: string;
  databaseUrl?: string;
}): Promise<CheckResult[]> {
  const exchangeOrders = await simOrders(o.restUrl);
  const rest = new UpbitRest({
    baseUrl: o.restUrl,
    accessKey: o.accessKey,
    secretKey: o.secretKey,
  });
  let exchangeHoldings: Record<string, string>;
  try {
    const { data } = await rest.getAccounts();
    exchangeHoldings = Object.fromEntries(
      data.map((a) => [a.currency, formatDec(dec(a.balance) + dec(a.locked))]),
    );
  } finally {
    rest.close();
  }
  const db = await openDatabase({ DATABASE_URL: o.databaseUrl ?? "", DATA_DIR: o.dataDir });
  try {
    const attempts = await db.sql<AttemptFacts[]>`
      select id::int as id, symbol, action, mode, side, paper_trade_id::int as paper_trade_id,
             state, uuid, executed_volume::text as executed_volume
      from upbit_order_attempts order by id`;
    const identifiers = await db.sql<{ identifier: string; attempt_id: number }[]>`
      select identifier, attempt_id::int as attempt_id from upbit_order_identifiers`;
    const paperTrades = await db.sql<{ id: number }[]>`select id::int as id from paper_trades`;
    return checkCrashFacts({
      installationId: await installationId(db.sql),
      exchangeOrders,
      attempts: [...attempts],
      paperTradeIds: paperTrades.map((r) => r.id),
      identifiers: [...identifiers],
      ledger: await ledgerPositions(db.sql),
      exchangeHoldings,
      ownerStart: OWNER_COINS,
      markets: MARKETS,
    });
  } finally {
    await db.close();
  }
}
