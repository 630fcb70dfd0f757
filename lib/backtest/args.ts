/**
 * @module Command-line arguments of `deno task backtest`, validated into one object; every
 * mistake is a {@linkcode UsageError} with a one-line message (the tool exits with status 2).
 */
import { ConfigError, parseConfig } from "../config.ts";
import { MARKET_CODE_PATTERN } from "../domain.ts";
import { overridesFromConfig, type ProfileName, resolveParams } from "../strategy/policy.ts";
import type { RunParameters } from "./report.ts";
import { parseSweep, type SweepAxis } from "./sweep.ts";
import { UsageError } from "./usage_error.ts";

export { UsageError };

/** Variables `--set` may change. */
export const SETTABLE = [
  "EVAL_TP_PCT",
  "EVAL_SL_PCT",
  "EVAL_HORIZON_SEC",
  "EVAL_ENTRY_EV_MIN",
  "EVAL_EXIT_EV_MIN",
  "EVAL_SKILL_GATE",
  "ORDER_KRW_AMOUNT",
  "EXECUTOR_MAX_SIGNAL_AGE_SEC",
] as const;

/** A parsed command line. */
export interface BacktestArgs {
  run: RunParameters;
  /** Where the JSON report and charts go (null: `DATA_DIR/backtests`). */
  outDir: string | null;
  /** Raw `--set` values (validated), applied over the environment's. */
  sets: Record<string, string>;
  /** `--sweep` grid, or null for a single run. */
  sweep: SweepAxis[] | null;
  /** `--walk-forward N` windows (1: none). */
  windows: number;
  /** `--workers N` (null: one per core). */
  workers: number | null;
}

const MARKET = MARKET_CODE_PATTERN;
const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;

/** `YYYY-MM-DD` (UTC midnight) or an ISO date-time with a zone; epoch ms. */
export function parseTime(name: string, value: string): number {
  const v = value.trim();
  const ms = DATE_ONLY.test(v)
    ? Date.parse(`${v}T00:00:00Z`)
    : DATE_TIME.test(v)
    ? Date.parse(v)
    : NaN;
  if (!Number.isFinite(ms)) {
    throw new UsageError(
      `${name} must be YYYY-MM-DD or an ISO date-time with a zone (e.g. 2026-12-01T09:00:00Z): got ${
        JSON.stringify(value)
      }`,
    );
  }
  return ms;
}

/** The range (and kind) of a numeric option, for {@linkcode parseNumberArg}. */
export interface NumberArgRule {
  min: number;
  max: number;
  /** Only whole numbers. @default {false} */
  whole?: boolean;
  /** What the number counts, in the message ("milliseconds": "a whole number of milliseconds"). */
  unit?: string;
  /** Appended to the range in the message, e.g. " (Upbit's trade history)". */
  note?: string;
}

/**
 * The number `value` of option `name` (e.g. `--workers`), within `rule`'s range.
 *
 * @throws {UsageError} when `value` is blank, not a finite number, not whole when it must be, or
 * out of range: `--workers must be a whole number from 1 to 256: got "0"`.
 * @example
 * ```ts
 * parseNumberArg("--latency-ms", "300", { min: 0, max: 60_000, whole: true }); // 300
 * ```
 */
export function parseNumberArg(name: string, value: string, rule: NumberArgRule): number {
  const n = Number(value);
  if (
    value.trim() === "" || !Number.isFinite(n) || (rule.whole === true && !Number.isInteger(n)) ||
    n < rule.min || n > rule.max
  ) {
    const kind = (rule.whole ? "a whole number" : "a number") +
      (rule.unit === undefined ? "" : ` of ${rule.unit}`);
    throw new UsageError(
      `${name} must be ${kind} from ${rule.min} to ${rule.max}${rule.note ?? ""}: got ${
        JSON.stringify(value)
      }`,
    );
  }
  return n;
}

/** Splits `--name value` and `--name=value` pairs; `--flag` alone gets "true". */
export function splitArgs(argv: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) throw new UsageError(`unexpected argument ${JSON.stringify(a)}`);
    const eq = a.indexOf("=");
    if (eq > 0) {
      out.push([a.slice(2, eq), a.slice(eq + 1)]);
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) throw new UsageError(`${a} needs a value`);
      out.push([a.slice(2), next]);
      i++;
    }
  }
  return out;
}

/**
 * Parses the arguments of `deno task backtest` against the environment's configuration
 * (`env`: profile, EVAL_* and ORDER_KRW_AMOUNT defaults).
 *
 * @throws {UsageError} for any bad or missing argument.
 * @example
 * ```ts
 * const a = parseBacktestArgs(["--market", "KRW-BTC", "--from", "2026-12-01", "--to", "2026-12-02"], {});
 * a.run.markets; // ["KRW-BTC"]
 * ```
 */
export function parseBacktestArgs(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): BacktestArgs {
  const sets: Record<string, string> = {};
  let markets: string[] | null = null;
  let from: number | null = null;
  let to: number | null = null;
  let profile: string | undefined;
  let source: "db" | "files" = "db";
  let slippageBps = 0;
  let latencyMs = 0;
  let outDir: string | null = null;
  let sweepSpec: string | null = null;
  let windows = 1;
  let workers: number | null = null;
  for (const [name, value] of splitArgs(argv)) {
    switch (name) {
      case "market":
        markets = value.split(",").map((m) => m.trim()).filter((m) => m !== "");
        for (const m of markets) {
          if (!MARKET.test(m)) {
            throw new UsageError(`--market ${JSON.stringify(m)} is not a market code like KRW-BTC`);
          }
        }
        if (new Set(markets).size !== markets.length) {
          throw new UsageError("--market lists a market twice");
        }
        break;
      case "from":
        from = parseTime("--from", value);
        break;
      case "to":
        to = parseTime("--to", value);
        break;
      case "profile":
        profile = value;
        break;
      case "source":
        if (value !== "db" && value !== "files") {
          throw new UsageError(`--source must be db or files: got ${JSON.stringify(value)}`);
        }
        source = value;
        break;
      case "slippage-bps":
        slippageBps = parseNumberArg("--slippage-bps", value, { min: 0, max: 1000 });
        break;
      case "latency-ms":
        latencyMs = parseNumberArg("--latency-ms", value, {
          min: 0,
          max: 60_000,
          whole: true,
          unit: "milliseconds",
        });
        break;
      case "out":
        outDir = value;
        break;
      case "sweep":
        sweepSpec = value;
        break;
      case "walk-forward":
        windows = parseNumberArg("--walk-forward", value, {
          min: 2,
          max: 50,
          whole: true,
          unit: "windows",
        });
        break;
      case "workers":
        workers = parseNumberArg("--workers", value, { min: 1, max: 256, whole: true });
        break;
      case "set": {
        const eq = value.indexOf("=");
        const key = eq > 0 ? value.slice(0, eq) : "";
        if (!(SETTABLE as readonly string[]).includes(key)) {
          throw new UsageError(
            `--set takes NAME=VALUE with NAME one of ${SETTABLE.join(", ")}: got ${
              JSON.stringify(value)
            }`,
          );
        }
        sets[key] = value.slice(eq + 1);
        break;
      }
      default:
        throw new UsageError(`unknown option --${name}`);
    }
  }
  if (!markets || markets.length === 0) {
    throw new UsageError("--market is required (e.g. --market KRW-BTC,KRW-ETH)");
  }
  if (from === null) throw new UsageError("--from is required (e.g. --from 2026-12-01)");
  if (to === null) throw new UsageError("--to is required (e.g. --to 2026-12-02)");
  if (!(from < to)) throw new UsageError("--from must be before --to");
  const merged: Record<string, string | undefined> = {};
  for (const k of [...SETTABLE, "PAPER_POLICY_PROFILE"]) merged[k] = env[k];
  Object.assign(merged, sets);
  if (profile !== undefined) merged.PAPER_POLICY_PROFILE = profile;
  let config;
  try {
    config = parseConfig(merged);
  } catch (err) {
    if (err instanceof ConfigError) {
      const p = err.problems[0]!;
      const what = p.name === "PAPER_POLICY_PROFILE" && profile !== undefined
        ? "--profile"
        : p.name;
      throw new UsageError(`${what} ${p.problem}`);
    }
    throw err;
  }
  let params;
  try {
    params = resolveParams(config.PAPER_POLICY_PROFILE as ProfileName, overridesFromConfig(config));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (windows > 1 && sweepSpec === null) throw new UsageError("--walk-forward needs --sweep");
  const sweep = sweepSpec === null
    ? null
    : parseSweep(sweepSpec, config.PAPER_POLICY_PROFILE, params);
  return {
    sweep,
    windows,
    workers,
    run: {
      markets,
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      source,
      profile: config.PAPER_POLICY_PROFILE,
      params,
      krwAmount: config.ORDER_KRW_AMOUNT,
      slippageBps,
      latencyMs,
      maxSignalAgeSec: config.EXECUTOR_MAX_SIGNAL_AGE_SEC,
    },
    outDir,
    sets,
  };
}
