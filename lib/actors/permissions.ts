/**
 * @module Least-privilege Deno permissions for actor workers.
 *
 * A worker gets nothing unless listed: no environment, no file system, no subprocesses, no FFI,
 * no system info, no remote imports, and network access only to the `host:port` pairs given.
 * Loading the worker's own modules (and npm packages from the cache) needs no read permission
 * in Deno 2, so `read` stays off unless an actor really reads files.
 */

/** What one actor may use. Everything not listed is denied. */
export interface ActorPermissionOptions {
  /** `host:port` pairs the actor may connect to (see {@linkcode hostPort}). */
  net?: readonly string[];
  /**
   * Environment variables the actor may read. Leave empty: actors get their configuration in
   * the start message. The one exception is `["PG*"]` for actors that use postgres.js, which
   * reads `PGMAX`, `PGAPPNAME` and friends from `process.env` while it builds its options:
   * without it, `postgres(url)` throws `NotCapable` in the worker.
   */
  env?: readonly string[];
  /** Files or directories the actor may read. */
  read?: readonly (string | URL)[];
  /** Files or directories the actor may write (the feed's trade recorder only). */
  write?: readonly (string | URL)[];
}

/**
 * Builds the `deno.permissions` object for `new Worker(...)`.
 *
 * @example Usage
 * ```ts
 * const permissions = actorPermissions({
 *   net: [hostPort(config.UPBIT_REST_URL), "127.0.0.1:5432"],
 *   env: ["PG*"],
 * });
 * ```
 */
export function actorPermissions(
  options: ActorPermissionOptions = {},
): Deno.PermissionOptionsObject {
  const list = <T>(items: readonly T[] | undefined): T[] | false =>
    items && items.length > 0 ? [...items] : false;
  return {
    env: list(options.env),
    net: list(options.net),
    read: list(options.read),
    write: list(options.write),
    run: false,
    ffi: false,
    sys: false,
    import: false,
  };
}

const DEFAULT_PORTS: Record<string, number> = {
  "http:": 80,
  "https:": 443,
  "ws:": 80,
  "wss:": 443,
  "postgres:": 5432,
  "postgresql:": 5432,
};

/**
 * The `host:port` a URL connects to, in the form Deno's net permission expects
 * (`https://api.upbit.com` gives `api.upbit.com:443`).
 *
 * @throws {TypeError} when `url` is not a URL with a known default port or an explicit one.
 */
export function hostPort(url: string): string {
  const u = new URL(url);
  const port = u.port !== "" ? Number(u.port) : DEFAULT_PORTS[u.protocol];
  if (port === undefined || u.hostname === "") {
    throw new TypeError(`Cannot derive host:port from a ${u.protocol} URL`);
  }
  return `${u.hostname}:${port}`;
}
