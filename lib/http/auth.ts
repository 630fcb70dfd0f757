/**
 * @module Bearer-token checks. The controls always need `API_TOKEN`; when upbot listens on a
 * non-loopback address every endpoint but `/healthz` and `/readyz` needs it too (start-up refuses
 * to run without one, see `lib/config.ts`). Tokens are compared in constant time.
 */
import { timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";

/** Paths open to anyone, whatever the address. */
const OPEN_PATHS = new Set(["/healthz", "/readyz"]);

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** Whether `given` equals `expected`, in time independent of where they differ. */
export async function tokensMatch(given: string, expected: string): Promise<boolean> {
  // Digests have equal length, so timingSafeEqual never throws and the length is not leaked.
  return timingSafeEqual(await digest(given), await digest(expected));
}

/** Options of {@linkcode requireToken}. */
export interface AuthOptions {
  /** `API_TOKEN`, or undefined when not configured. */
  token: string | undefined;
  /** Whether every path but the open ones needs the token (non-loopback `HTTP_HOST`). */
  everywhere: boolean;
}

/**
 * Middleware: `/api/control/*` always needs `Authorization: Bearer <API_TOKEN>` (403 when no
 * token is configured), other paths only when `everywhere`.
 */
export function requireToken(options: AuthOptions): MiddlewareHandler {
  return async (c, next) => {
    const path = c.req.path;
    if (OPEN_PATHS.has(path)) return await next();
    const isControl = path === "/api/control" || path.startsWith("/api/control/");
    if (!isControl && !options.everywhere) return await next();
    if (options.token === undefined) {
      throw new ApiError(403, {
        error: "API_TOKEN is not set: the HTTP controls are disabled",
      });
    }
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m || !(await tokensMatch(m[1]!, options.token))) {
      c.header("WWW-Authenticate", 'Bearer realm="upbot"');
      throw new ApiError(401, { error: "missing or wrong bearer token" });
    }
    await next();
  };
}
