/**
 * @module `POST /api/control/alarms/clear`: a person clears an alarm once it is handled. Most
 * alarms (an identifier conflict, a lost order, a position gone) have no cause upbot could see
 * go away, so they stay active, and `UpbotAlarmRaised` firing, until someone clears them here.
 * Under `/api/control/`, so the bearer token is always required (`auth.ts`). Clearing changes no
 * trading state: a halt an alarm came with is lifted by a resume.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";
import { clearAlarm } from "../store/alarms.ts";
import { parseJsonBody } from "./errors.ts";
import { MarketCode } from "./query_schemas.ts";

const ClearBody = z.strictObject({
  code: z.string().trim().min(1, "must not be empty").max(100, "must be at most 100 characters"),
  market: MarketCode.optional(),
});

/** What the route needs. */
export interface AlarmRouteDeps {
  sql: Sql;
  log: Logger;
}

/**
 * Routes of the alarm controls, to mount at the root.
 *
 * @example
 * ```sh
 * curl -X POST -H "Authorization: Bearer $API_TOKEN" -d '{"code":"order_lost","market":"KRW-BTC"}' \
 *   http://127.0.0.1:8501/api/control/alarms/clear
 * ```
 */
export function alarmRoutes(deps: AlarmRouteDeps): Hono {
  const routes = new Hono();
  routes.post("/api/control/alarms/clear", async (c) => {
    const body = await parseJsonBody(c, ClearBody);
    const cleared = await clearAlarm(deps.sql, body.code, body.market ?? null);
    if (cleared === 0) {
      return c.json({
        ok: false,
        error: `no active alarm ${body.code}${
          body.market ? ` on ${body.market}` : " without a market"
        }`,
      }, 404);
    }
    deps.log.warn("Alarm cleared over HTTP", { code: body.code, market: body.market ?? null });
    return c.json({ ok: true, cleared });
  });
  return routes;
}
