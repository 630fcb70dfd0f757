/**
 * @module A running upbot (HTTP port 0, fresh database of a backend) pointed at a simulator of its
 * own, for the HTTP tests: the upbot of `_fault_rig.ts` (workers log at `error` only; main-thread
 * lines are captured) with the `test` policy profile unless told otherwise.
 */
import { LIVE_GUARD_PHRASE } from "../lib/execution/guard.ts";
import type { Upbot } from "../lib/upbot.ts";
import {
  DEFAULT_ACCESS_KEY,
  DEFAULT_SECRET_KEY,
  type Simulator,
  startSimulator,
} from "../sim/mod.ts";
import { startUpbotRig as startFaultRig } from "./_fault_rig.ts";

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
  const sim = await startSimulator({ seed: 7, markets, rate: 200 });
  try {
    const rig = await startFaultRig({
      backend,
      sim,
      markets,
      env: { PAPER_POLICY_PROFILE: "test", ...env },
    });
    return {
      sim,
      upbot: rig.upbot,
      url: rig.upbot.httpUrl,
      lines: rig.lines,
      async [Symbol.asyncDispose]() {
        try {
          await rig[Symbol.asyncDispose]();
        } finally {
          await sim.close();
        }
      },
    };
  } catch (err) {
    await sim.close();
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
