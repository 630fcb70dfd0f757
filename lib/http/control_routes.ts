/**
 * @module `POST /api/control/halt` and `POST /api/control/resume`: the same trading-state store as
 * the `deno task halt/resume` commands (`lib/control/trading_state.ts`), written with by = "http".
 * A halt stops new entries only; exits, cancels and reconciliation go on. A resume while a flatten
 * is pending is refused with 409 and the reason in `error`. The bearer token is
 * checked by the app's middleware (`auth.ts`) before these handlers run.
 */
import { Hono } from "hono";
import { z } from "zod";
import {
  GLOBAL_SCOPE,
  haltEntries,
  resumeEntries,
  TradingStateRefusedError,
} from "../control/trading_state.ts";
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { parseJsonBody } from "./errors.ts";
import { MarketCode } from "./query_schemas.ts";
import { tradingStateViews } from "./trading_views.ts";

const HaltBody = z.strictObject({
  reason: z.string().trim().min(1, "must not be empty").max(500, "must be at most 500 characters"),
  market: MarketCode.optional(),
});

const ResumeBody = z.strictObject({ market: MarketCode.optional() });

/** What the controls need. */
export interface ControlDeps {
  sql: Sql;
  log: Logger;
  /** Called after a change is stored (upbot wakes the executor so it applies at once). */
  onChanged?: () => void;
}

/** Routes of the controls, to mount at the root. */
export function controlRoutes(deps: ControlDeps): Hono {
  const routes = new Hono();
  routes.post("/api/control/halt", async (c) => {
    const body = await parseJsonBody(c, HaltBody);
    const scope = body.market ?? GLOBAL_SCOPE;
    await haltEntries(deps.sql, { scope, reason: body.reason, by: "http" });
    deps.log.warn("Entries HALTED over HTTP", { scope, reason: body.reason });
    deps.onChanged?.();
    return c.json({ ok: true, trading: await tradingStateViews(deps.sql) });
  });
  routes.post("/api/control/resume", async (c) => {
    const body = await parseJsonBody(c, ResumeBody);
    const scope = body.market ?? GLOBAL_SCOPE;
    try {
      await resumeEntries(deps.sql, { scope, by: "http" });
    } catch (err) {
      // A resume while a flatten is pending: 409 with the sentence saying why (nothing changed).
      if (!(err instanceof TradingStateRefusedError)) throw err;
      deps.log.error("Resume over HTTP refused", { scope, problem: err.message });
      return c.json({ ok: false, error: err.message }, 409);
    }
    deps.log.warn("Entries RESUMED over HTTP", { scope });
    deps.onChanged?.();
    return c.json({ ok: true, trading: await tradingStateViews(deps.sql) });
  });
  return routes;
}
