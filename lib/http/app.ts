/**
 * @module The HTTP application (Hono): health now; dashboard JSON, metrics and the web page are
 * mounted here as they are built.
 */
import { Hono } from "hono";

/** What the health endpoint reports. */
export interface HealthReport {
  /** false when the process cannot do its job (database down, trading halted). */
  ok: boolean;
  [detail: string]: unknown;
}

/** What the app needs from the rest of upbot. */
export interface AppDeps {
  /** Current health; called per request. */
  health: () => Promise<HealthReport> | HealthReport;
  /** Extra routes mounted at the root (e.g. `/api/actors`). */
  routes?: Hono[];
}

/**
 * Builds the Hono app.
 *
 * @example
 * ```ts
 * const app = createApp({ health: () => ({ ok: true }) });
 * const res = await app.request("/healthz");
 * res.status; // 200
 * ```
 */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/healthz", async (c) => {
    const report = await deps.health();
    return c.json(report, report.ok ? 200 : 503);
  });
  for (const routes of deps.routes ?? []) app.route("/", routes);
  app.notFound((c) => c.json({ error: "not found" }, 404));
  app.onError((err, c) => {
    return c.json({ error: "internal error", message: err.message }, 500);
  });
  return app;
}
