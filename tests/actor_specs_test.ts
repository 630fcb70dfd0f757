import assert from "node:assert/strict";
import { parseConfig } from "../lib/config.ts";
import { DEFAULT_GROUP_SHARES, pipelineActorSpecs } from "../lib/pipeline/actor_specs.ts";
import { DEFAULT_BUDGETS } from "../lib/upbit/rate_limiter.ts";

const config = parseConfig({
  UPBIT_ACCESS_KEY: "ak-spec-test",
  UPBIT_SECRET_KEY: "sk-spec-test",
  UPBIT_REST_URL: "https://api.upbit.com",
  MARKETS: "KRW-BTC,KRW-ETH",
});
const specs = pipelineActorSpecs(config, { kind: "url", url: "postgres://u:pw@db.local:5433/x" });

Deno.test("pipelineActorSpecs() gives the keys only to the executor, order-poller and account", () => {
  assert.deepEqual(specs.map((s) => s.name), [
    "feed",
    "evaluator",
    "executor",
    "order_poller",
    "account",
  ]);
  for (const spec of specs) {
    const text = JSON.stringify(spec.config);
    const keyed = ["executor", "order_poller", "account"].includes(spec.name);
    assert.equal(text.includes("sk-spec-test"), keyed, spec.name);
    assert.equal(text.includes("ak-spec-test"), keyed, spec.name);
  }
});

Deno.test("pipelineActorSpecs() permissions: PG* env only, net only to the venue and database", () => {
  for (const spec of specs) {
    const p = spec.permissions as Deno.PermissionOptionsObject;
    assert.deepEqual(p.env, ["PG*"], spec.name);
    for (const denied of ["write", "run", "ffi", "sys", "import", "read"] as const) {
      assert.equal(p[denied], false, `${spec.name} ${denied}`);
    }
    const net = p.net as string[];
    assert.ok(net.includes("db.local:5433"), spec.name);
    for (const host of net) {
      assert.ok(["db.local:5433", "api.upbit.com:443"].includes(host), `${spec.name} ${host}`);
    }
  }
  assert.deepEqual(specs.find((s) => s.name === "evaluator")!.permissions!.net, ["db.local:5433"]);
  assert.deepEqual(specs.filter((s) => s.critical).map((s) => s.name), [
    "executor",
    "order_poller",
  ]);
});

Deno.test("the keyed actors' shares of the default group add up to Upbit's limit at most", () => {
  const total = Object.values(DEFAULT_GROUP_SHARES).reduce((a, b) => a + b, 0);
  assert.ok(total <= DEFAULT_BUDGETS.default.limit, `${total} > ${DEFAULT_BUDGETS.default.limit}`);
});

Deno.test("only the account actor gets the private WebSocket URL: one private connection per key", () => {
  const withWs = specs.filter((s) => JSON.stringify(s.config).includes("/websocket/v1/private"));
  assert.deepEqual(withWs.map((s) => s.name), ["account"]);
});
