/**
 * @module Liveness and readiness. `/healthz` says the process lives and its database answers
 * (container health checks use it); `/readyz` says this instance trades: every permanent actor
 * runs and the feed is connected and caught up. A halt does not make an instance unready: halted
 * means no new entries while exits, cancels and reconciliation go on, which is work only a
 * running instance does. Of a hot-standby pair (`lib/db/lease.ts`) only the leader can be ready: the
 * standby is alive (`/healthz` 200) and answers `/readyz` 503 with `role: "standby"`.
 */
import type { ActorStatus } from "../actors/supervisor.ts";
import type { Sql } from "../db/connect.ts";
import type { TradeMode } from "../execution/guard.ts";
import { reconciliationStatus } from "../execution/reconcile.ts";
import { FEED_ALLOWED_LATENESS_MS } from "../strategy/bars.ts";

/** Extra allowance on top of the feed's lateness window before its bars count as behind. */
export const FEED_SLACK_MS = 2000;

/** Whether this upbot holds the lease and trades (`leader`) or waits for it (`standby`). */
export type Role = "leader" | "standby";

/** The one problem a standby reports. */
export const STANDBY_PROBLEM =
  "this upbot is the standby: another upbot holds the lease and trades";

/** What `/healthz` answers. */
export interface Liveness {
  ok: boolean;
  db: "ok" | "unreachable";
  uptime_sec: number;
  /** Present when the caller knows it (`startUpbot` always does). */
  role?: Role;
}

/** What `/readyz` answers. */
export interface Readiness {
  ready: boolean;
  /** One sentence per reason this instance does not trade; `[]` when ready. */
  problems: string[];
  /** Present when the caller knows it (`startUpbot` always does). */
  role?: Role;
}

/** Readiness of a standby: never ready, it runs no trading actor. */
export function standbyReadiness(): Readiness {
  return { ready: false, problems: [STANDBY_PROBLEM], role: "standby" };
}

/**
 * Liveness: the database answers `select 1`.
 *
 * @param ping runs the query; any throw counts as unreachable.
 */
export async function liveness(ping: () => Promise<unknown>, startedAt: number): Promise<Liveness> {
  let db: Liveness["db"] = "ok";
  try {
    await ping();
  } catch {
    db = "unreachable";
  }
  return {
    ok: db === "ok",
    db,
    uptime_sec: Math.round((Date.now() - startedAt) / 1000),
  };
}

/** How long `/readyz` waits for the database before calling it unreachable. */
export const DB_READY_TIMEOUT_MS = 2000;

/**
 * The readiness problem of the database: `["database is unreachable (CODE)"]` when `ping` throws
 * or does not answer within {@linkcode DB_READY_TIMEOUT_MS}, else `[]`. An instance whose
 * database is down cannot record an attempt before sending it, so it does not trade: the
 * actors stay `running` (they retry), and only this check shows the outage.
 */
export async function databaseProblems(
  ping: () => Promise<unknown>,
  timeoutMs = DB_READY_TIMEOUT_MS,
): Promise<string[]> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      ping(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(Object.assign(new Error("timeout"), { code: "TIMEOUT" })),
          timeoutMs,
        );
      }),
    ]);
    return [];
  } catch (err) {
    // Only the error's code: a driver message may name hosts or users, and /readyz is public.
    const code = (err as { code?: unknown })?.code;
    return [`database is unreachable${typeof code === "string" ? ` (${code})` : ""}`];
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Readiness from the actors' status (as served by `/api/actors`): each permanent actor must be
 * `running`, and the feed's heartbeat metrics must show a connected WebSocket, a finished
 * start-up backfill and a newest final bar that ended no longer ago than its lateness window plus
 * {@linkcode FEED_SLACK_MS}. The bar's age is taken at the heartbeat that reported it, so a
 * healthy feed is not called behind just because its last heartbeat is a second old (a feed whose
 * heartbeats stop is the supervisor's to restart, and then not running).
 *
 * @param extraProblems problems found elsewhere (e.g. live reconciliation not yet completed).
 */
export function readiness(
  actors: readonly ActorStatus[],
  options: { now?: number; extraProblems?: readonly string[] } = {},
): Readiness {
  const now = options.now ?? Date.now();
  const problems: string[] = [];
  for (const a of actors) {
    if (a.restartPolicy === "permanent" && a.state !== "running") {
      problems.push(`actor ${a.name} is ${a.state}`);
    }
  }
  const feed = actors.find((a) => a.name === "feed");
  if (!feed) {
    problems.push("no feed actor");
  } else if (feed.state === "running") {
    problems.push(...feedProblems(feed, now));
  }
  problems.push(...(options.extraProblems ?? []));
  return { ready: problems.length === 0, problems };
}

function feedProblems(feed: ActorStatus, now: number): string[] {
  const m = feed.metrics;
  const problems: string[] = [];
  if (m.connected !== true) problems.push("feed is not connected to the Upbit WebSocket");
  if (m.backfillDone !== true) problems.push("feed has not finished its start-up backfill");
  const latenessMs = typeof m.allowedLatenessMs === "number"
    ? m.allowedLatenessMs
    : FEED_ALLOWED_LATENESS_MS; // the feed's own, when it has not reported it
  const limitMs = latenessMs + FEED_SLACK_MS;
  if (typeof m.lastFinalBarEndMs !== "number") {
    problems.push("feed has no final bar yet");
  } else {
    const reportedAt = now - (feed.lastHeartbeatAgeMs ?? 0);
    const ageMs = reportedAt - m.lastFinalBarEndMs;
    if (ageMs > limitMs) {
      problems.push(
        `feed is behind: its last final bar ended ${ageMs} ms ago (limit ${limitMs} ms)`,
      );
    }
  }
  return problems;
}

/**
 * Readiness problems of reconciliation, in live mode only (`[]` in shadow and test): the gate is
 * closed (a live start, a connection lost too long), or no reconciliation has completed yet.
 * Pass them to {@linkcode readiness} as `extraProblems`.
 */
export async function reconciliationProblems(sql: Sql, mode: TradeMode): Promise<string[]> {
  if (mode !== "live") return [];
  const status = await reconciliationStatus(sql);
  if (!status.gate.open) {
    return [`reconciliation gate closed (${status.gate.reason ?? "no reason stored"})`];
  }
  if (status.lastCompleted === null) return ["no reconciliation has completed yet"];
  return [];
}
