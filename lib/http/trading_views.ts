/**
 * @module The trading state and alarms as the HTTP endpoints show them: read from the stores of
 * `lib/control/trading_state.ts` and `lib/store/alarms.ts`, times in Unix ms, text masked.
 */
import { GLOBAL_SCOPE, tradingStates } from "../control/trading_state.ts";
import type { Sql } from "../db/connect.ts";
import { redact } from "../log.ts";
import { activeAlarms } from "../store/alarms.ts";

/** One scope's trading state. */
export interface TradingStateView {
  /** `global` or a market code. */
  scope: string;
  state: "active" | "halted";
  /** Who set the current state (`cli`, `http`, `supervisor`, …); null when never set. */
  by: string | null;
  /** Why it is halted; null when active. */
  reason: string | null;
  /** Unix ms when the current state began; null when never set. */
  since: number | null;
}

/** One active alarm. */
export interface AlarmView {
  id: number;
  code: string;
  market: string | null;
  message: string;
  count: number;
  first_ts: number;
  last_ts: number;
}

/** Every stored scope, the global one always first (active when never halted). */
export async function tradingStateViews(sql: Sql): Promise<TradingStateView[]> {
  const rows = await tradingStates(sql);
  const views: TradingStateView[] = rows.map((r) => ({
    scope: r.scope,
    state: r.halted ? "halted" : "active",
    by: r.by,
    reason: r.reason === null ? null : redact(r.reason),
    since: r.since.getTime(),
  }));
  if (!views.some((v) => v.scope === GLOBAL_SCOPE)) {
    views.unshift({ scope: GLOBAL_SCOPE, state: "active", by: null, reason: null, since: null });
  }
  return views;
}

/** Active alarms, oldest first. */
export async function alarmViews(sql: Sql): Promise<AlarmView[]> {
  return (await activeAlarms(sql)).map((a) => ({
    id: Number(a.id),
    code: a.code,
    market: a.market,
    message: redact(a.message),
    count: a.count,
    first_ts: a.first_at.getTime(),
    last_ts: a.last_at.getTime(),
  }));
}
