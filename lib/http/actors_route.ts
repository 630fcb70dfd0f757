/**
 * @module `GET /api/actors`: the status of every actor as a JSON array, one object per actor
 * (name, state, restarts, last error (secrets masked), heartbeat age, uptime, messages in/out,
 * dropped, ...).
 */
import { Hono } from "hono";
import type { ActorStatus } from "../actors/supervisor.ts";

/** Anything that can report actor status; in production the `Supervisor`. */
export interface ActorStatusSource {
  status(): ActorStatus[];
}

/**
 * Routes serving `GET /api/actors`, to mount at the root (`createApp({ routes: [...] })`).
 *
 * @example Usage
 * ```ts ignore
 * const app = createApp({ health, routes: [actorsRoute(supervisor)] });
 * ```
 */
export function actorsRoute(source: ActorStatusSource): Hono {
  const routes = new Hono();
  routes.get("/api/actors", (c) => {
    c.header("Cache-Control", "no-store");
    // An actor's last error is masked by the supervisor as it records it (tests/http_api_test.ts).
    return c.json(source.status());
  });
  return routes;
}
