import assert from "node:assert/strict";
import { Hono } from "hono";
import type { ActorStatus } from "../lib/actors/supervisor.ts";
import { ConfigError, parseConfig } from "../lib/config.ts";
import { BODY_LIMIT_BYTES, createApp } from "../lib/http/app.ts";
import { tokensMatch } from "../lib/http/auth.ts";
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

function appWith(
  auth: { token: string | undefined; everywhere: boolean },
  logLines: string[] = [],
): Hono {
  const extra = new Hono();
  extra.get("/api/boom", () => {
    throw new Error("db password is hunter2-secret");
  });
  extra.post("/api/control/halt", (c) => c.json({ ok: true }));
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
  assert.equal(await tokensMatch("a", "a"), true);
  assert.equal(await tokensMatch("a", "ab"), false);
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
  assert.equal(parseConfig({ HTTP_HOST: "0.0.0.0", API_TOKEN: "t" }).HTTP_HOST, "0.0.0.0");
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
