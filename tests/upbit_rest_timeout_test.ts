/**
 * @module `UPBIT_REST_TIMEOUT_MS` reaches every actor that talks to Upbit: the slices of
 * `pipelineActorSpecs` carry it and the actors' schemas bound it, the clients the actors build
 * time out after it, and a live create whose answer the simulator withholds is recorded as
 * outcome-unknown after the configured time (not the client's 10 s default), then found by
 * identifier and adopted, never sent again.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../lib/config.ts";
import {
  AccountConfig,
  ExecutorConfig,
  FeedConfig,
  keyedUpbitRest,
  OrderPollerConfig,
  pipelineActorSpecs,
  quotationUpbitRest,
} from "../lib/pipeline/actor_specs.ts";
import { createLogger } from "../lib/log.ts";
import { UpbitTransportError } from "../lib/upbit/errors.ts";
import { testBackends } from "./_db.ts";
import { startDisposableSimulator, startUpbotRig } from "./_fault_rig.ts";
import { LIVE_ENV } from "./_upbot_rig.ts";

/** The actors that build an Upbit client, with the schema each validates its slice with. */
const REST_ACTORS = {
  feed: FeedConfig,
  executor: ExecutorConfig,
  order_poller: OrderPollerConfig,
  account: AccountConfig,
} as const;

Deno.test("UPBIT_REST_TIMEOUT_MS is in the slice of every actor with an Upbit client, and its schema bounds it", () => {
  const config = parseConfig({
    UPBIT_ACCESS_KEY: "ak-timeout-test",
    UPBIT_SECRET_KEY: "sk-timeout-test",
    UPBIT_REST_TIMEOUT_MS: "2500",
  });
  const specs = pipelineActorSpecs(config, { kind: "url", url: "postgres://u:pw@db.local/x" });
  for (const spec of specs) {
    const slice = spec.config as Record<string, unknown>;
    const schema = REST_ACTORS[spec.name as keyof typeof REST_ACTORS];
    if (!schema) {
      // The evaluator never calls Upbit.
      assert.equal(spec.name, "evaluator");
      assert.equal("restTimeoutMs" in slice, false);
      continue;
    }
    assert.equal(slice.restTimeoutMs, 2500, spec.name);
    assert.equal(schema.parse(slice).restTimeoutMs, 2500, spec.name);
    for (const bad of [undefined, 999, 120_001, 1500.5]) {
      assert.equal(
        schema.safeParse({ ...slice, restTimeoutMs: bad }).success,
        false,
        `${spec.name} refuses restTimeoutMs=${bad}`,
      );
    }
  }
});

Deno.test("the actors' Upbit clients time out after restTimeoutMs: a lost create is unknown, a slow read fails", async () => {
  await using sim = await startDisposableSimulator({ seed: 3, markets: ["KRW-BTC"] });
  const log = createLogger("upbit_rest_timeout_test");
  // Keyed (executor, order-poller, account): the simulator creates the order and withholds the
  // answer for 30 s.
  sim.setFaults({ lost_response_rate: 1 });
  const keyed = keyedUpbitRest("executor", {
    restUrl: sim.restUrl,
    restTimeoutMs: 1000,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
  }, log);
  try {
    const started = performance.now();
    const result = await keyed.postOrder({
      market: "KRW-BTC",
      side: "bid",
      ord_type: "price",
      price: "6000",
      identifier: "timeout-test-1",
    });
    const elapsed = performance.now() - started;
    assert.equal(result.kind, "unknown");
    assert.equal(result.kind === "unknown" && result.reason, "timeout");
    assert.ok(elapsed >= 950 && elapsed < 5000, `answered after ${Math.round(elapsed)} ms`);
    // The order exists: a look-up finds it (the caller's path; the create is never sent again).
    sim.setFaults({ lost_response_rate: 0 });
    const found = await keyed.resolveUnknownOrder("timeout-test-1");
    assert.equal(found.kind, "found");
    assert.equal(sim.orders().filter((o) => o.identifier === "timeout-test-1").length, 1);
  } finally {
    keyed.close();
  }
  // Quotation (the feed): every answer comes after 1.5 s, later than its 1 s timeout.
  sim.setFaults({ latency_ms: 1500 });
  const quotation = quotationUpbitRest(sim.restUrl, log, undefined, 1000);
  try {
    await assert.rejects(
      quotation.getMarkets(),
      (err: unknown) =>
        err instanceof UpbitTransportError && err.kind === "timeout" &&
        /timed out after 1000 ms/.test(err.message),
    );
  } finally {
    quotation.close();
  }
});

for (const backend of testBackends()) {
  Deno.test(
    `live: a create whose answer never comes is unknown after UPBIT_REST_TIMEOUT_MS, then found by identifier, never re-sent [${backend}]`,
    async () => {
      const timeoutMs = 1500;
      // Every create's answer is withheld from the start (the order is created).
      await using sim = await startDisposableSimulator({
        seed: 21,
        markets: ["KRW-BTC"],
        rate: 200,
        faults: { lost_response_rate: 1 },
      });
      await using rig = await startUpbotRig({
        backend,
        sim,
        markets: ["KRW-BTC"],
        env: { ...LIVE_ENV, UPBIT_REST_TIMEOUT_MS: String(timeoutMs) },
      });
      // Every (state, reason) the first live attempt is seen in.
      const path: string[] = [];
      let unknown: { id: string; identifier: string; updatedAt: Date } | undefined;
      await rig.until("a live create recorded as outcome-unknown", async () => {
        const [a] = await rig.sql`
          select id::text, identifier, state, reason, error_msg, updated_at
          from upbit_order_attempts where mode = 'live' order by id limit 1`;
        if (!a) return false;
        const step = `${a.state}/${a.reason ?? "-"}`;
        if (path.at(-1) !== step) path.push(step);
        if (a.state !== "unknown") return false;
        assert.equal(a.reason, "lost_response", path.join(" -> "));
        assert.equal(a.error_msg, "outcome unknown: timeout");
        unknown = { id: a.id, identifier: a.identifier, updatedAt: a.updated_at };
        return true;
      }, 60_000);
      // From the create's arrival at the simulator to the unknown outcome: about the configured
      // timeout (the client's default would be 10 s).
      const receipts = await (await fetch(`${sim.restUrl}/_sim/receipts`)).json() as {
        identifier: string;
        received_at_ms: number;
      }[];
      const receipt = receipts.find((r) => r.identifier === unknown!.identifier);
      assert.ok(receipt, `the simulator got ${unknown!.identifier}`);
      const waitedMs = unknown!.updatedAt.getTime() - receipt.received_at_ms;
      assert.ok(
        waitedMs >= timeoutMs - 300 && waitedMs < timeoutMs + 3000,
        `unknown ${Math.round(waitedMs)} ms after the create arrived (timeout ${timeoutMs} ms)`,
      );
      // Looked up by identifier and adopted: the order the lost create made.
      let adopted: { uuid: string; seq: number } | undefined;
      await rig.until("the unknown create found by identifier and adopted", async () => {
        const [a] = await rig.sql`
          select state, reason, uuid, identifier_seq from upbit_order_attempts
          where id = ${unknown!.id}`;
        const step = `${a!.state}/${a!.reason ?? "-"}`;
        if (path.at(-1) !== step) path.push(step);
        // A market buy may end `cancel` at Upbit (the unspent rest of its KRW is released).
        const adoptedStates = ["open", "partially_filled", "filled", "cancelled"];
        if (a!.uuid === null || !adoptedStates.includes(a!.state)) return false;
        adopted = { uuid: a!.uuid, seq: a!.identifier_seq };
        return true;
      }, 30_000).catch((err) => {
        throw new Error(`${(err as Error).message}\nattempt path: ${path.join(" -> ")}`);
      });
      const orders = sim.orders().filter((o) => o.identifier === unknown!.identifier);
      assert.equal(orders.length, 1, "one order under the identifier");
      assert.equal(adopted!.uuid, orders[0]!.uuid, "the attempt adopted the order the create made");
      // Never sent again: a re-send would have been refused as duplicated_identifier (seen in
      // the path) and a fresh identifier would have raised identifier_seq.
      assert.equal(adopted!.seq, 0, path.join(" -> "));
      assert.ok(!path.some((s) => s.includes("duplicated_identifier")), path.join(" -> "));
    },
  );
}
