import assert from "node:assert/strict";
import { Hono } from "hono";
import type { ActorStatus } from "../lib/actors/supervisor.ts";
import {
  ConfigError,
  isLoopbackHost,
  parseConfig,
  SECRET_NAMES,
  secretValues,
} from "../lib/config.ts";
import { BODY_LIMIT_BYTES, createApp } from "../lib/http/app.ts";
import { type AuthOptions, hostAllowed, tokensMatch } from "../lib/http/auth.ts";
import { readiness } from "../lib/http/health.ts";
import { setLogSink } from "../lib/log.ts";
import { spawnDeno } from "../lib/subprocess.ts";

const ALIVE = () => ({ ok: true, db: "ok" as const, uptime_sec: 1 });
const READY = () => ({ ready: true, problems: [] });

function actor(name: string, over: Partial<ActorStatus> = {}): ActorStatus {
  return {
    name,
    state: "running",
    restartPolicy: "permanent",
    critical: false,
    restarts: 0,
    lastError: null,
    lastErrorAt: null,
    lastHeartbeatAgeMs: 0,
    uptimeMs: 1000,
    messagesIn: 0,
    messagesOut: 0,
    dropped: 0,
    buffered: 0,
    invalidIn: 0,
    coalesced: 0,
    mailbox: 0,
    invalidOut: 0,
    memory: null,
    metrics: {},
    ...over,
  };
}

const NOW = 1_800_000_000_000;
const caughtUp = { connected: true, backfillDone: true, allowedLatenessMs: 2000 };

Deno.test("readiness: ready when every permanent actor runs and the feed is caught up", () => {
  const r = readiness([
    actor("feed", { metrics: { ...caughtUp, lastFinalBarEndMs: NOW - 3000 } }),
    actor("executor"),
    actor("helper", { restartPolicy: "transient", state: "stopped" }),
  ], { now: NOW });
  assert.deepEqual(r, { ready: true, problems: [] });
});

Deno.test("readiness: names each problem", () => {
  const r = readiness([
    actor("feed", { metrics: { connected: false, backfillDone: false, lastFinalBarEndMs: null } }),
    actor("executor", { state: "restarting" }),
  ], { now: NOW, extraProblems: ["live reconciliation has not completed"] });
  assert.equal(r.ready, false);
  assert.deepEqual(r.problems, [
    "actor executor is restarting",
    "feed is not connected to the Upbit WebSocket",
    "feed has not finished its start-up backfill",
    "feed has no final bar yet",
    "live reconciliation has not completed",
  ]);
});

Deno.test("readiness: a feed whose last final bar is older than lateness + 2 s is behind", () => {
  // Reported 1 s ago (heartbeat age) with a bar that had then ended 4.001 s before: behind.
  const behind = readiness([
    actor("feed", {
      lastHeartbeatAgeMs: 1000,
      metrics: { ...caughtUp, lastFinalBarEndMs: NOW - 1000 - 4001 },
    }),
  ], { now: NOW });
  assert.deepEqual(behind.problems, [
    "feed is behind: its last final bar ended 4001 ms ago (limit 4000 ms)",
  ]);
  // Exactly at the limit, as of the heartbeat that reported it: caught up.
  const atLimit = readiness([
    actor("feed", {
      lastHeartbeatAgeMs: 1000,
      metrics: { ...caughtUp, lastFinalBarEndMs: NOW - 1000 - 4000 },
    }),
  ], { now: NOW });
  assert.equal(atLimit.ready, true);
  const noFeed = readiness([actor("executor")], { now: NOW });
  assert.deepEqual(noFeed.problems, ["no feed actor"]);
  const feedDown = readiness([actor("feed", { state: "failed" })], { now: NOW });
  assert.deepEqual(feedDown.problems, ["actor feed is failed"]);
});

function appWith(auth: AuthOptions, logLines: string[] = []): Hono {
  const extra = new Hono();
  extra.get("/api/boom", () => {
    throw new Error("db password is hunter2-secret");
  });
  extra.post("/api/control/halt", (c) => c.json({ ok: true }));
  extra.post("/api/control/resume", (c) => c.json({ ok: true }));
  extra.post("/api/control/alarms/clear", (c) => c.json({ ok: true }));
  extra.get("/api/account", (c) => c.json({ krw: 1 }));
  extra.get("/metrics", (c) => c.text("upbot_up 1\n"));
  extra.post("/grafana/query", (c) => c.json([]));
  extra.post("/api/echo", async (c) => c.json({ size: (await c.req.text()).length }));
  return createApp({
    liveness: ALIVE,
    readiness: READY,
    auth,
    routes: [extra],
    log: {
      debug: () => {},
      info: () => {},
      warn: () => {},
      error: (msg: string, fields?: Record<string, unknown>) =>
        logLines.push(JSON.stringify({ msg, ...fields })),
    } as never,
  });
}

Deno.test("controls answer 403 naming API_TOKEN when no token is configured", async () => {
  const app = appWith({ token: undefined, everywhere: false });
  const res = await app.request("/api/control/halt", { method: "POST", body: "{}" });
  assert.equal(res.status, 403);
  assert.deepEqual(await res.json(), {
    error: "API_TOKEN is not set: the HTTP controls are disabled",
  });
  // Other endpoints stay open on loopback.
  assert.equal((await app.request("/healthz")).status, 200);
});

Deno.test("controls need the bearer token; a wrong or missing one is a 401", async () => {
  const app = appWith({ token: "s3cret-token", everywhere: false });
  const halt = (auth?: string) =>
    app.request("/api/control/halt", {
      method: "POST",
      body: "{}",
      headers: auth ? { authorization: auth } : {},
    });
  for (const bad of [undefined, "Bearer wrong", "Bearer s3cret-token-x", "Basic s3cret-token"]) {
    const res = await halt(bad);
    assert.equal(res.status, 401, String(bad));
    const text = await res.text();
    assert.ok(!text.includes("s3cret-token"), text);
    assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="upbot"');
  }
  assert.equal((await halt("Bearer s3cret-token")).status, 200);
  assert.equal(tokensMatch("a", "a"), true);
  assert.equal(tokensMatch("a", "ab"), false);
});

Deno.test("off loopback every endpoint but /healthz and /readyz needs the token", async () => {
  const app = appWith({ token: "tok", everywhere: true });
  assert.equal((await app.request("/healthz")).status, 200);
  assert.equal((await app.request("/readyz")).status, 200);
  for (const path of ["/api/boom", "/metrics", "/grafana/", "/", "/nope"]) {
    assert.equal((await app.request(path)).status, 401, path);
  }
  const ok = await app.request("/nope", { headers: { authorization: "Bearer tok" } });
  assert.equal(ok.status, 404);
});

const FULL = "full-token-8d2e-0a9c";
const READ = "read-token-41c7-5be3";
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const READS: [string, string][] = [
  ["GET", "/api/account"],
  ["GET", "/metrics"],
  ["POST", "/grafana/query"],
];
const CONTROLS = ["/api/control/halt", "/api/control/resume", "/api/control/alarms/clear"];

Deno.test("API_READ_TOKEN reads everything but never opens a control; API_TOKEN does both", async () => {
  for (const everywhere of [true, false]) {
    const app = appWith({ token: FULL, readToken: READ, everywhere });
    for (const [method, path] of READS) {
      for (const token of [READ, FULL]) {
        const res = await app.request(path, {
          method,
          body: method === "POST" ? "{}" : undefined,
          headers: bearer(token),
        });
        assert.equal(res.status, 200, `${method} ${path} with ${token}`);
        await res.body?.cancel();
      }
      const none = await app.request(path, { method, body: method === "POST" ? "{}" : undefined });
      assert.equal(none.status, everywhere ? 401 : 200, `${method} ${path} without a token`);
      await none.body?.cancel();
    }
    for (const path of CONTROLS) {
      const read = await app.request(path, { method: "POST", body: "{}", headers: bearer(READ) });
      assert.equal(read.status, 403, path);
      assert.deepEqual(await read.json(), {
        error: "API_READ_TOKEN only reads: the HTTP controls need API_TOKEN",
      });
      const full = await app.request(path, { method: "POST", body: "{}", headers: bearer(FULL) });
      assert.equal(full.status, 200, path);
      await full.body?.cancel();
      const wrong = await app.request(path, {
        method: "POST",
        body: "{}",
        headers: bearer(READ + "x"),
      });
      assert.equal(wrong.status, 401, path);
      await wrong.body?.cancel();
    }
  }
  // Without API_TOKEN the read token still opens no control.
  const readOnly = appWith({ token: undefined, readToken: READ, everywhere: false });
  const halt = await readOnly.request("/api/control/halt", {
    method: "POST",
    body: "{}",
    headers: bearer(READ),
  });
  assert.equal(halt.status, 403);
  assert.deepEqual(await halt.json(), {
    error: "API_TOKEN is not set: the HTTP controls are disabled",
  });
});

Deno.test("config: API_READ_TOKEN is a secret, and equal to API_TOKEN it is refused without showing either", () => {
  assert.ok(SECRET_NAMES.includes("API_READ_TOKEN"));
  const c = parseConfig({ HTTP_HOST: "0.0.0.0", API_TOKEN: FULL, API_READ_TOKEN: READ });
  assert.equal(c.API_READ_TOKEN, READ);
  assert.ok(secretValues(c).includes(READ));
  assert.equal(parseConfig({}).API_READ_TOKEN, undefined);
  assert.throws(
    () => parseConfig({ HTTP_HOST: "0.0.0.0", API_TOKEN: FULL, API_READ_TOKEN: ` ${FULL} ` }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(
        err.message,
        "config: API_READ_TOKEN must differ from API_TOKEN: the read token must not open the controls (value hidden)",
      );
      assert.ok(!err.message.includes(FULL));
      return true;
    },
  );
});

const HOST_REFUSED = (host: string) =>
  `Host ${
    JSON.stringify(host)
  } is not allowed: while HTTP_HOST is a loopback address and reads need no token, upbot answers only requests addressed to localhost, a loopback address or HTTP_HOST (a guard against DNS rebinding)`;

Deno.test("open reads answer only requests addressed to a loopback host (DNS rebinding)", async () => {
  const app = appWith({ token: FULL, readToken: READ, everywhere: false });
  // app.request's default URL is http://localhost/: no Host header, the URL's host counts.
  assert.equal((await app.request("/api/account")).status, 200);
  for (
    const host of [
      "localhost",
      "localhost:8501",
      "LOCALHOST:1",
      "127.0.0.1",
      "127.0.0.1:8501",
      "[::1]",
      "[::1]:8501",
      "127.0.0.2:80",
    ]
  ) {
    const res = await app.request("/api/account", { headers: { host } });
    assert.equal(res.status, 200, host);
    await res.body?.cancel();
  }
  for (
    const host of [
      "evil.example:8501",
      "evil.example",
      "127.0.0.1.evil.example",
      "localhost.evil.example:8501",
      "localhost.",
      "::1",
      "[::1]evil",
      "evil.example@127.0.0.1",
      "127.0.0.1 evil",
      "",
    ]
  ) {
    for (const path of ["/api/account", "/api/status", "/metrics", "/healthz", "/"]) {
      const res = await app.request(path, { headers: { host } });
      assert.equal(res.status, 403, `${host} ${path}`);
      assert.deepEqual(await res.json(), { error: HOST_REFUSED(host) });
    }
    // Not even with a token: a rebinding page cannot send one, nobody else needs this.
    const halt = await app.request("/api/control/halt", {
      method: "POST",
      body: "{}",
      headers: { host, ...bearer(FULL) },
    });
    assert.equal(halt.status, 403, host);
    await halt.body?.cancel();
  }
  const long = "a".repeat(300);
  const res = await app.request("/api/account", { headers: { host: long } });
  assert.deepEqual(await res.json(), { error: HOST_REFUSED("a".repeat(100) + "...") });
  assert.equal(hostAllowed("box.internal:8501"), false);
  assert.equal(hostAllowed("[::1]:8501"), true);
});

Deno.test("a request addressed to HTTP_HOST is answered: by its name while loopback, by token off loopback", async () => {
  // The auth as startUpbot builds it from the config: reads are open, and Host checked, only
  // while HTTP_HOST is a loopback host, which Host may then name like any other loopback host.
  const appFor = (env: Record<string, string>) => {
    const config = parseConfig(env);
    return appWith({
      token: config.API_TOKEN,
      readToken: config.API_READ_TOKEN,
      everywhere: !isLoopbackHost(config.HTTP_HOST),
    });
  };
  const loopbackNames: [string, string][] = [
    ["127.0.0.1", "127.0.0.1:8501"],
    ["127.0.0.2", "127.0.0.2:8501"],
    ["localhost", "localhost:8501"],
    ["LocalHost", "LocalHost:8501"],
    ["::1", "[::1]:8501"],
    ["[::1]", "[::1]:8501"],
  ];
  for (const [httpHost, header] of loopbackNames) {
    const res = await appFor({ HTTP_HOST: httpHost }).request("/api/account", {
      headers: { host: header },
    });
    assert.equal(res.status, 200, httpHost);
    await res.body?.cancel();
  }
  // Off loopback the token guards, and Host is not checked: HTTP_HOST's name or any other.
  for (const httpHost of ["0.0.0.0", "box.internal"]) {
    const app = appFor({ HTTP_HOST: httpHost, API_TOKEN: FULL, API_READ_TOKEN: READ });
    for (const host of [`${httpHost}:8501`, "upbot:8501"]) {
      const none = await app.request("/api/account", { headers: { host } });
      assert.equal(none.status, 401, `${httpHost} ${host}`);
      await none.body?.cancel();
      const read = await app.request("/api/account", { headers: { host, ...bearer(READ) } });
      assert.equal(read.status, 200, `${httpHost} ${host}`);
      await read.body?.cancel();
    }
  }
});

/** One raw HTTP/1.1 request (fetch cannot set Host): the status and the body. */
async function rawRequest(port: number, head: string): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(head));
    let text = "";
    const buf = new Uint8Array(16384);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const [status, ...rest] = text.split("\r\n\r\n");
    return { status: Number(status!.split(" ")[1]), body: rest.join("\r\n\r\n") };
  } finally {
    conn.close();
  }
}

Deno.test("Deno.serve hands the Host header over as sent: a rebound name is refused on a real socket", async () => {
  const app = appWith({ token: undefined, everywhere: false });
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  const port = server.addr.port;
  const get = (host: string) =>
    rawRequest(port, `GET /api/account HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  const evil = await get(`rebind.evil.example:${port}`);
  assert.equal(evil.status, 403);
  assert.deepEqual(JSON.parse(evil.body), { error: HOST_REFUSED(`rebind.evil.example:${port}`) });
  assert.equal((await get(`127.0.0.1:${port}`)).status, 200);
  assert.equal((await get(`localhost:${port}`)).status, 200);
  // An absolute URL naming loopback does not override a rebound Host.
  const absolute = await rawRequest(
    port,
    `GET http://127.0.0.1:${port}/api/account HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`,
  );
  assert.equal(absolute.status, 403);
  // Without a Host header (HTTP/1.0) Deno's URL says localhost: answered.
  assert.equal((await rawRequest(port, "GET /api/account HTTP/1.0\r\n\r\n")).status, 200);
  // fetch sends the URL's host.
  const res = await fetch(`http://127.0.0.1:${port}/api/account`);
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

Deno.test("404, 413 and 500 answer JSON; a 500 is logged with a request id and leaks nothing", async () => {
  const restore = setLogSink(() => {});
  try {
    const logLines: string[] = [];
    const app = appWith({ token: undefined, everywhere: false }, logLines);
    const missing = await app.request("/no/such/route");
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), { error: "not found" });

    const big = await app.request("/api/echo", {
      method: "POST",
      body: "x".repeat(BODY_LIMIT_BYTES + 1),
    });
    assert.equal(big.status, 413);
    assert.deepEqual(await big.json(), { error: `body larger than ${BODY_LIMIT_BYTES} bytes` });
    const small = await app.request("/api/echo", { method: "POST", body: "x".repeat(10) });
    assert.deepEqual(await small.json(), { size: 10 });

    const boom = await app.request("/api/boom");
    assert.equal(boom.status, 500);
    const body = await boom.json();
    assert.equal(body.error, "internal error");
    assert.match(body.request_id, /^[0-9a-f-]{36}$/);
    assert.ok(!JSON.stringify(body).includes("hunter2"));
    assert.equal(logLines.length, 1);
    const logged = JSON.parse(logLines[0]!);
    assert.equal(logged.request_id, body.request_id);
    assert.equal(logged.path, "/api/boom");
    assert.match(logged.error, /db password/);
  } finally {
    restore();
  }
});

Deno.test("config: a non-loopback HTTP_HOST without API_TOKEN is refused, naming API_TOKEN", () => {
  assert.throws(() => parseConfig({ HTTP_HOST: "0.0.0.0" }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.problems.length, 1);
    assert.equal(err.problems[0]!.name, "API_TOKEN");
    assert.match(err.message, /^config: API_TOKEN must be set when HTTP_HOST is not a loopback/);
    return true;
  });
  assert.equal(
    parseConfig({ HTTP_HOST: "0.0.0.0", API_TOKEN: "t".repeat(16) }).HTTP_HOST,
    "0.0.0.0",
  );
  for (const host of ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"]) {
    assert.equal(parseConfig({ HTTP_HOST: host }).API_TOKEN, undefined, host);
  }
});

Deno.test("main.ts refuses to start on a non-loopback HTTP_HOST without API_TOKEN: exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_notoken_" });
  try {
    const proc = spawnDeno(
      [
        "run",
        "--unstable-worker-options",
        "--allow-all",
        new URL("../main.ts", import.meta.url).pathname,
      ],
      {
        cwd: dir,
        env: { DATA_DIR: dir, HTTP_HOST: "0.0.0.0", HTTP_PORT: "0", LOG_FORMAT: "json" },
      },
    );
    const status = await proc.exited();
    assert.equal(status.code, 2, proc.lines.join("\n"));
    const errors = proc.lines.map((l) => JSON.parse(l)).filter((l) => l.level === "error");
    assert.equal(errors.length, 1, proc.lines.join("\n"));
    assert.match(errors[0].msg, /^API_TOKEN must be set when HTTP_HOST is not a loopback address/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
