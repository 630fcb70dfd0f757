import assert from "node:assert/strict";
import { freePort, spawnDeno } from "../lib/subprocess.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const START_ARGS = ["run", "--unstable-worker-options", "--allow-all", MAIN];

Deno.test("main.ts boots on the embedded database, answers /healthz, exits 0 on SIGTERM", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "upbot_main_" });
  const port = freePort();
  const proc = spawnDeno(START_ARGS, {
    cwd: dataDir,
    env: { DATA_DIR: dataDir, HTTP_PORT: String(port), LOG_FORMAT: "json" },
  });
  try {
    await proc.waitForLine(/HTTP server listening/);
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.ok, true);
    assert.equal(body.db, "ok");
    // A second upbot on the same DATA_DIR gets a clear error, not a corrupted database.
    const second = spawnDeno(START_ARGS, {
      cwd: dataDir,
      env: { DATA_DIR: dataDir, HTTP_PORT: String(freePort()), LOG_FORMAT: "json" },
    });
    const secondStatus = await second.exited();
    assert.equal(secondStatus.code, 1);
    assert.ok(
      second.lines.some((l) => /in use by another upbot process/.test(l)),
      second.lines.join("\n"),
    );

    const status = await proc.stop("SIGTERM");
    assert.equal(status.code, 0, proc.lines.join("\n"));
    const logged = proc.lines.map((l) => JSON.parse(l));
    assert.ok(logged.every((l) => typeof l.time === "string" && l.level && l.actor && l.msg));
    assert.ok(logged.some((l) => l.msg === "DB OK" && /embedded PGlite/.test(l.backend)));
    assert.ok(logged.some((l) => l.msg === "stopped"));
  } finally {
    await proc.stop("SIGKILL").catch(() => {});
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("main.ts exits 2 when ORDER_KRW_AMOUNT exceeds RISK_MAX_ORDER_KRW", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_badrisk_" });
  try {
    const proc = spawnDeno(START_ARGS, {
      cwd: dir,
      env: { ORDER_KRW_AMOUNT: "70000", RISK_MAX_ORDER_KRW: "60000", LOG_FORMAT: "json" },
    });
    const status = await proc.exited();
    assert.equal(status.code, 2);
    const errors = proc.lines.map((l) => JSON.parse(l)).filter((l) => l.level === "error");
    assert.equal(errors.length, 1, proc.lines.join("\n"));
    assert.match(errors[0].msg, /^ORDER_KRW_AMOUNT .*RISK_MAX_ORDER_KRW=60000/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts exits 2 with one line per bad variable and no secret", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_badcfg_" });
  try {
    const proc = spawnDeno(START_ARGS, {
      cwd: dir,
      env: {
        HTTP_PORT: "eighty",
        UPBIT_TRADE_MODE: "yolo",
        DATABASE_URL: "mysql://me:topsecretpw@db/x",
        UPBIT_SECRET_KEY: "upbit-secret-value",
        LOG_FORMAT: "json",
      },
    });
    const status = await proc.exited();
    assert.equal(status.code, 2);
    const errors = proc.lines.map((l) => JSON.parse(l)).filter((l) => l.level === "error");
    assert.equal(errors.length, 3, proc.lines.join("\n"));
    const text = proc.lines.join("\n");
    for (const name of ["HTTP_PORT", "UPBIT_TRADE_MODE", "DATABASE_URL"]) {
      assert.ok(errors.some((e) => e.msg.startsWith(name + " ")), name);
    }
    assert.ok(!text.includes("topsecretpw"));
    assert.ok(!text.includes("upbit-secret-value"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts uses DATABASE_URL when set and never logs its password", {
  ignore: !Deno.env.get("TEST_DATABASE_URL"),
}, async () => {
  const url = new URL(Deno.env.get("TEST_DATABASE_URL")!);
  url.password = "not-needed-pw"; // trust auth ignores it; it must not appear in any line
  const dir = await Deno.makeTempDir({ prefix: "upbot_pg_" });
  const port = freePort();
  const proc = spawnDeno(START_ARGS, {
    cwd: dir,
    env: { DATABASE_URL: url.toString(), HTTP_PORT: String(port), LOG_FORMAT: "json" },
  });
  try {
    await proc.waitForLine(/HTTP server listening/);
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    // A second upbot on the same database waits as standby (tests/standby_test.ts has the rest).
    const secondPort = freePort();
    const second = spawnDeno(START_ARGS, {
      cwd: dir,
      env: { DATABASE_URL: url.toString(), HTTP_PORT: String(secondPort), LOG_FORMAT: "json" },
    });
    try {
      await second.waitForLine(/HTTP server listening.*"role":"standby"/);
      const ready = await fetch(`http://127.0.0.1:${secondPort}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal((await ready.json()).role, "standby");
      assert.equal((await second.stop("SIGTERM")).code, 0, second.lines.join("\n"));
    } finally {
      await second.stop("SIGKILL").catch(() => {});
    }
    assert.equal((await proc.stop("SIGINT")).code, 0);
    const text = proc.lines.join("\n");
    assert.ok(text.includes('"backend":"postgres (postgres://'), text);
    assert.ok(!text.includes("not-needed-pw"));
  } finally {
    await proc.stop("SIGKILL").catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts with its HTTP port taken fails before any actor starts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_port_" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const proc = spawnDeno(START_ARGS, {
      cwd: dir,
      env: { DATA_DIR: dir, HTTP_PORT: String(taken.addr.port), LOG_FORMAT: "json" },
    });
    const status = await proc.exited();
    assert.equal(status.code, 1);
    const text = proc.lines.join("\n");
    assert.match(text, /start-up failed/);
    assert.ok(!text.includes("actor started"), "no actor ran");
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts --check-config checks the settings and says the mode, starting nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_check_" });
  try {
    const ok = spawnDeno([...START_ARGS, "--check-config"], {
      cwd: dir,
      env: {
        DATA_DIR: dir,
        LOG_FORMAT: "json",
        UPBIT_TRADE_MODE: "live",
        DATABASE_URL: "postgres://bob:hunter2-9f3e@db.example:5432/upbot",
      },
    });
    assert.equal((await ok.exited()).code, 0, ok.lines.join("\n"));
    const [line] = ok.lines.map((l) => JSON.parse(l));
    assert.equal(line.msg, "configuration OK");
    assert.equal(line.mode, "shadow");
    assert.equal(line.requested_mode, "live");
    assert.match(line.downgraded_because, /LIVE_TRADING_ENABLED=false/);
    assert.equal(line.database, "postgres://bob:***@db.example:5432/upbot");
    assert.ok(!ok.lines.join("\n").includes("hunter2-9f3e"));
    // Nothing started: no control directory, no database files.
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);

    const bad = spawnDeno([...START_ARGS, "--check-config"], {
      cwd: dir,
      env: { LOG_FORMAT: "json", API_TOKEN: "short" },
    });
    assert.equal((await bad.exited()).code, 2);
    assert.match(bad.lines.join("\n"), /API_TOKEN must be at least 16 characters/);

    const unknown = spawnDeno([...START_ARGS, "--chek-config"], { cwd: dir, env: {} });
    assert.equal((await unknown.exited()).code, 2);
    const [refused] = unknown.lines.map((l) => JSON.parse(l));
    assert.match(refused.msg, /^unknown argument "--chek-config": .+ --check-config$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
