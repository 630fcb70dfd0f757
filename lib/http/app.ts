/**
 * @module The HTTP application (Hono): health and readiness, authentication, body limits, JSON
 * errors, and the routes built elsewhere in `lib/http/` (dashboard JSON, controls, Grafana,
 * Prometheus, the web page).
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createLogger, type Logger } from "../log.ts";
import { type AuthOptions, requireToken } from "./auth.ts";
import { ApiError } from "./errors.ts";
import type { Liveness, Readiness } from "./health.ts";

/** Largest request body accepted, in bytes (bigger: 413). */
export const BODY_LIMIT_BYTES = 64 * 1024;

/** What the app needs from the rest of upbot. */
export interface AppDeps {
  /** `/healthz`: the process lives and its database answers. */
  liveness: () => Promise<Liveness> | Liveness;
  /** `/readyz`: this instance trades. */
  readiness: () => Promise<Readiness> | Readiness;
  /** Who may call what; default: controls disabled, everything else open to loopback hosts. */
  auth?: AuthOptions;
  /** Extra routes mounted at the root (e.g. `/api/actors`). */
  routes?: Hono[];
  /** Where 500s are logged. @default {createLogger("http")} */
  log?: Logger;
}

/**
 * Builds the Hono app.
 *
 * @example
 * ```ts
 * const app = createApp({
 *   liveness: () => ({ ok: true, db: "ok", uptime_sec: 0 }),
 *   readiness: () => ({ ready: true, problems: [] }),
 * });
 * const res = await app.request("/healthz");
 * res.status; // 200
 * ```
 */
export function createApp(deps: AppDeps): Hono {
  const log = deps.log ?? createLogger("http");
  const app = new Hono();
  app.use(requireToken(deps.auth ?? { token: undefined, everywhere: false }));
  app.use(bodyLimit({
    maxSize: BODY_LIMIT_BYTES,
    onError: () => {
      throw new ApiError(413, { error: `body larger than ${BODY_LIMIT_BYTES} bytes` });
    },
  }));
  app.use(async (c, next) => {
    await next();
    if (!c.res.headers.has("Cache-Control")) c.header("Cache-Control", "no-store");
  });
  app.get("/healthz", async (c) => {
    const report = await deps.liveness();
    return c.json(report, report.ok ? 200 : 503);
  });
  app.get("/readyz", async (c) => {
    const report = await deps.readiness();
    return c.json(report, report.ready ? 200 : 503);
  });
  for (const routes of deps.routes ?? []) app.route("/", routes);
  app.notFound((c) => c.json({ error: "not found" }, 404));
  app.onError((err, c) => {
    if (err instanceof ApiError) return c.json(err.body, err.status);
    // The message and stack go to the log (secrets are masked there), never to the client.
    const requestId = crypto.randomUUID();
    log.error("HTTP request failed", {
      request_id: requestId,
      method: c.req.method,
      path: c.req.path,
      error: err instanceof Error ? err.message : String(err),
      stack: err instanceof Error ? err.stack : undefined,
    });
    return c.json({ error: "internal error", request_id: requestId }, 500);
  });
  return app;
}
