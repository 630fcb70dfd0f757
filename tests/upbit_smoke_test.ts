import assert from "node:assert/strict";
import { startSimulator } from "../sim/mod.ts";
import { spawnDeno } from "../lib/subprocess.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const SMOKE = [
  "run",
  "--config",
  ROOT + "deno.json",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  ROOT + "tools/smoke.ts",
];

async function runSmoke(env: Record<string, string>) {
  // An empty directory as cwd: no stray .env is read.
  const cwd = await Deno.makeTempDir();
  try {
    const p = spawnDeno(SMOKE, { env: { LOG_FORMAT: "json", ...env }, cwd });
    const status = await p.exited();
    return { code: status.code, lines: p.lines.filter((l) => l.trim() !== "") };
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
}

Deno.test("smoke CLI without keys exits 1 with one line naming the missing variables", async () => {
  const { code, lines } = await runSmoke({ UPBIT_ACCESS_KEY: "only-access" });
  assert.equal(code, 1);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0] as string, /missing UPBIT_SECRET_KEY/);
  const none = await runSmoke({});
  assert.equal(none.code, 1);
  assert.match(none.lines.join("\n"), /missing UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY/);
});

Deno.test("smoke CLI with keys calls accounts and orders/test, printing meta but no secret", async () => {
  const sim = await startSimulator({ port: 0, seed: 1, rate: 0 });
  try {
    const { code, lines } = await runSmoke({
      UPBIT_ACCESS_KEY: sim.accessKey,
      UPBIT_SECRET_KEY: sim.secretKey,
      UPBIT_REST_URL: sim.restUrl,
      MARKETS: "KRW-ETH,KRW-BTC",
      UPBIT_ORDER_TEST_ENABLED: "true",
    });
    assert.equal(code, 0, lines.join("\n"));
    const records = lines.map((l) => JSON.parse(l));
    const accounts = records.find((r) => r.msg === "GET /v1/accounts ok");
    assert.equal(accounts?.http_status, 200);
    assert.match(accounts?.remaining_req, /^group=default; /);
    assert.equal(typeof accounts?.latency_ms, "number");
    assert.equal(accounts?.balances[0].currency, "KRW");
    const expiry = records.find((r) => String(r.msg).startsWith("the Upbit key expires in"));
    assert.equal(expiry?.level, "info");
    assert.ok(expiry?.days_to_expiry >= 364, JSON.stringify(expiry));
    const test = records.find((r) => r.msg.startsWith("POST /v1/orders/test ok"));
    assert.equal(test?.http_status, 201);
    assert.equal(test?.market, "KRW-ETH");
    assert.match(test?.remaining_req, /^group=order-test; /);
    assert.equal(sim.orders().length, 0, "a test order creates nothing");
    const all = lines.join("\n");
    assert.ok(!all.includes(sim.secretKey) && !all.includes(sim.accessKey));
    assert.ok(!all.includes("eyJ"), "no token printed");
  } finally {
    await sim.close();
  }
});

Deno.test("smoke CLI warns when the key expires within 14 days", async () => {
  const sim = await startSimulator({
    port: 0,
    seed: 1,
    rate: 0,
    apiKeyExpireAtMs: Date.now() + 3.5 * 86_400_000,
  });
  try {
    const { code, lines } = await runSmoke({
      UPBIT_ACCESS_KEY: sim.accessKey,
      UPBIT_SECRET_KEY: sim.secretKey,
      UPBIT_REST_URL: sim.restUrl,
    });
    assert.equal(code, 0, lines.join("\n"));
    const expiry = lines.map((l) => JSON.parse(l)).find((r) =>
      String(r.msg).startsWith("the Upbit key expires in")
    );
    assert.equal(expiry?.level, "warn");
    assert.equal(expiry?.days_to_expiry, 3);
    assert.match(expiry?.msg, /expires in 3 days: issue a new one/);
  } finally {
    await sim.close();
  }
});

Deno.test("smoke CLI prints the UpbitApiError fields and exits 1 when Upbit refuses", async () => {
  const sim = await startSimulator({ port: 0, seed: 1, rate: 0 });
  try {
    const { code, lines } = await runSmoke({
      UPBIT_ACCESS_KEY: sim.accessKey,
      UPBIT_SECRET_KEY: "wrong-secret-key",
      UPBIT_REST_URL: sim.restUrl,
    });
    assert.equal(code, 1);
    const failure = lines.map((l) => JSON.parse(l)).find((r) =>
      r.msg === "GET /v1/accounts failed"
    );
    assert.equal(failure?.error, "UpbitApiError");
    assert.equal(failure?.http_status, 401);
    assert.equal(failure?.code, "jwt_verification");
    assert.equal(typeof failure?.message, "string");
    assert.ok(!lines.join("\n").includes("wrong-secret-key"));
  } finally {
    await sim.close();
  }
});

Deno.test("smoke CLI exits 2 on bad configuration", async () => {
  const { code, lines } = await runSmoke({ MARKETS: "not a market" });
  assert.equal(code, 2);
  assert.match(lines.join("\n"), /MARKETS/);
});
