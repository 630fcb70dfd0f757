/**
 * @module Bearer-token and Host checks. The controls (`/api/control/*`) always need `API_TOKEN`;
 * when upbot listens on a non-loopback address every other endpoint but `/healthz` and `/readyz`
 * needs `API_TOKEN` or `API_READ_TOKEN` (start-up refuses to run without `API_TOKEN`, see
 * `lib/config.ts`). The read token never opens a control, so Grafana and Prometheus, which hold it,
 * cannot halt or resume trading. Tokens are compared in constant time.
 *
 * While reads need no token (loopback `HTTP_HOST`), a request must be addressed to a loopback host
 * (its `Host` header), which `HTTP_HOST` then is too: a web page whose domain an attacker re-points
 * at 127.0.0.1 (DNS rebinding) sends its own domain there and gets a 403 instead of the balances.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { isLoopbackHost } from "../config.ts";
import { ApiError } from "./errors.ts";

/** Paths open to anyone, whatever the address. */
const OPEN_PATHS = new Set(["/healthz", "/readyz"]);

/** The SHA-256 digest of `text`: what tokens are compared as. */
function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

/**
 * Whether the token whose digest is `given` is the one whose digest is `expected` (none when that
 * token is not configured), in time independent of where they differ.
 */
function digestsMatch(given: Uint8Array, expected: Uint8Array | undefined): boolean {
  // Digests have equal length, so timingSafeEqual never throws and the length is not leaked.
  return expected !== undefined && timingSafeEqual(given, expected);
}

/** Whether `given` equals `expected`, in time independent of where they differ. */
export function tokensMatch(given: string, expected: string): boolean {
  return digestsMatch(digest(given), digest(expected));
}

/** Options of {@linkcode requireToken}. */
export interface AuthOptions {
  /** `API_TOKEN` (every path, the controls included), or undefined when not configured. */
  token: string | undefined;
  /** `API_READ_TOKEN` (every path but the controls), or undefined when not configured. */
  readToken?: string | undefined;
  /** Whether every path but the open ones needs a token (non-loopback `HTTP_HOST`). */
  everywhere: boolean;
}

/** How much of a refused `Host` header an error shows. */
const HOST_SHOWN_CHARS = 100;

/**
 * The host name of a `Host` header value (`name`, `name:port`, `[v6]`, `[v6]:port`), lowercased
 * and without brackets, or undefined when the value has another form.
 */
export function hostOfHeader(value: string): string | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s]+)(?::\d{0,5})?$/.exec(value);
  return m ? m[1]!.toLowerCase().replace(/^\[|\]$/g, "") : undefined;
}

/**
 * Whether a request whose `Host` header is `header` may be answered while reads are open: it
 * names a loopback host (`localhost`, `127.x.x.x`, `[::1]`), with any port. (Reads are open only
 * while `HTTP_HOST` is a loopback host, so this allows `HTTP_HOST` too.)
 */
export function hostAllowed(header: string): boolean {
  const name = hostOfHeader(header);
  return name !== undefined && isLoopbackHost(name);
}

/**
 * Middleware: `/api/control/*` always needs `Authorization: Bearer <API_TOKEN>` (403 when no
 * token is configured or the read token is given), other paths only when `everywhere`, and then
 * the read token will do. While not `everywhere`, a `Host` naming no loopback host is refused
 * (403) on every path. The configured tokens are hashed once, here.
 */
export function requireToken(options: AuthOptions): MiddlewareHandler {
  const token = options.token === undefined ? undefined : digest(options.token);
  const readToken = options.readToken === undefined ? undefined : digest(options.readToken);
  return async (c, next) => {
    if (!options.everywhere) {
      // No Host header (HTTP/1.0): the URL's host, which Deno then makes `localhost`.
      const host = c.req.header("host") ?? new URL(c.req.url).host;
      if (!hostAllowed(host)) {
        const shown = host.length > HOST_SHOWN_CHARS
          ? host.slice(0, HOST_SHOWN_CHARS) + "..."
          : host;
        throw new ApiError(403, {
          error: `Host ${
            JSON.stringify(shown)
          } is not allowed: while HTTP_HOST is a loopback address and reads need no token, upbot answers only requests addressed to localhost, a loopback address or HTTP_HOST (a guard against DNS rebinding)`,
        });
      }
    }
    const path = c.req.path;
    if (OPEN_PATHS.has(path)) return await next();
    const isControl = path === "/api/control" || path.startsWith("/api/control/");
    if (!isControl && !options.everywhere) return await next();
    if (isControl && options.token === undefined) {
      throw new ApiError(403, {
        error: "API_TOKEN is not set: the HTTP controls are disabled",
      });
    }
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const given = m?.[1] === undefined ? undefined : digest(m[1]);
    const full = given !== undefined && digestsMatch(given, token);
    const read = given !== undefined && digestsMatch(given, readToken);
    if (full || (read && !isControl)) return await next();
    if (read) {
      throw new ApiError(403, {
        error: "API_READ_TOKEN only reads: the HTTP controls need API_TOKEN",
      });
    }
    c.header("WWW-Authenticate", 'Bearer realm="upbot"');
    throw new ApiError(401, { error: "missing or wrong bearer token" });
  };
}
