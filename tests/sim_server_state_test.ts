import assert from "node:assert/strict";
import { startSimulator, StateFileError } from "../sim/mod.ts";
import { type RunningProcess, spawnDeno } from "../lib/subprocess.ts";
import { signedPost, signedQuery } from "./_sim_auth.ts";

const MAIN = new URL("../sim/main.ts", import.meta.url).pathname;
const KEYS = { accessKey: "sim-access-key", secretKey: "sim-secret-key" };

function startSimProcess(stateFile: string): RunningProcess {
  return spawnDeno([
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-write",
    MAIN,
    "--port",
    "0",
    "--rate",
    "0",
    "--markets",
    "KRW-BTC,KRW-ETH",
    "--state",
    stateFile,
  ]);
}

async function restUrlOf(proc: RunningProcess): Promise<string> {
  const line = await proc.waitForLine(/REST:\s+http/);
  return /(http:\/\/\S+)/.exec(line)![1]!;
}

async function getJson(rest: string, path: string, query = "") {
  const res = await signedQuery(rest, "GET", path, KEYS, query);
  return { status: res.status, body: await res.json() };
}

async function post(rest: string, path: string, body: Record<string, string>) {
  const res = await signedPost(rest, path, KEYS, body);
  return { status: res.status, body: await res.json() };
}

/** A price on the KRW-BTC tick grid (1,000 KRW) at `share` of the last trade. */
async function btcPrice(rest: string, share: number): Promise<string> {
  const [ticker] = await (await fetch(`${rest}/v1/ticker?markets=KRW-BTC`)).json();
  return String(Math.floor((ticker.trade_price * share) / 1000) * 1000);
}

Deno.test("--state: orders, fills, balances and burnt identifiers survive a SIGKILL and restart", async () => {
  const dir = await Deno.makeTempDir();
  const stateFile = `${dir}/sim-state.json`;
  let proc = startSimProcess(stateFile);
  try {
    let rest = await restUrlOf(proc);
    assert.ok((await Deno.stat(stateFile)).isFile, "a missing file starts fresh and is created");
    const low = await btcPrice(rest, 0.5);
    const resting = await post(rest, "/v1/orders", {
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      price: low,
      volume: "0.0002",
      identifier: "keep-1",
    });
    assert.equal(resting.status, 201);
    const bought = await post(rest, "/v1/orders", {
      market: "KRW-BTC",
      side: "bid",
      ord_type: "price",
      price: "20000",
      identifier: "fill-1",
    });
    assert.equal(bought.status, 201);
    const toCancel = await post(rest, "/v1/orders", {
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      price: low,
      volume: "0.0001",
      identifier: "cancel-1",
    });
    assert.equal(toCancel.status, 201);
    const cancelled = await signedQuery(rest, "DELETE", "/v1/order", KEYS, "identifier=cancel-1");
    assert.equal(cancelled.status, 200);
    await cancelled.body?.cancel();
    // A refused create burns its identifier (§4.3).
    const refused = await post(rest, "/v1/orders", {
      market: "KRW-BTC",
      side: "ask",
      ord_type: "market",
      volume: "5",
      identifier: "fail-1",
    });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.name, "insufficient_funds_ask");

    const ids = ["keep-1", "fill-1", "cancel-1"];
    const before = new Map<string, unknown>();
    for (const id of ids) {
      const got = await getJson(rest, "/v1/order", `identifier=${id}`);
      assert.equal(got.status, 200);
      before.set(id, got.body);
    }
    const filled = before.get("fill-1") as { trades: { uuid: string }[]; uuid: string };
    assert.ok(filled.trades.length > 0, "the market buy filled from the book");
    assert.equal((before.get("cancel-1") as { state: string }).state, "cancel");
    const accountsBefore = (await getJson(rest, "/v1/accounts")).body;
    assert.ok(accountsBefore.some((a: { currency: string }) => a.currency === "BTC"));

    proc.child.kill("SIGKILL");
    await proc.exited();
    proc = startSimProcess(stateFile);
    rest = await restUrlOf(proc);

    assert.deepEqual((await getJson(rest, "/v1/accounts")).body, accountsBefore);
    for (const id of ids) {
      const byIdentifier = await getJson(rest, "/v1/order", `identifier=${id}`);
      assert.deepEqual(byIdentifier.body, before.get(id), id);
      const uuid = (before.get(id) as { uuid: string }).uuid;
      const byUuid = await getJson(rest, "/v1/order", `uuid=${uuid}`);
      assert.deepEqual(byUuid.body, before.get(id), uuid);
    }
    const open = await getJson(rest, "/v1/orders/open", "market=KRW-BTC");
    assert.deepEqual(open.body.map((o: { identifier: string }) => o.identifier), ["keep-1"]);
    for (const id of [...ids, "fail-1"]) {
      const reuse = await post(rest, "/v1/orders", {
        market: "KRW-BTC",
        side: "bid",
        ord_type: "limit",
        price: low,
        volume: "0.0001",
        identifier: id,
      });
      assert.equal(reuse.status, 400, id);
      assert.equal(reuse.body.error.name, "duplicated_identifier", id);
    }
    // New uuids continue the stream: none repeats an order or trade uuid from before the restart.
    const fresh = await post(rest, "/v1/orders", {
      market: "KRW-BTC",
      side: "bid",
      ord_type: "price",
      price: "10000",
      identifier: "after-restart",
    });
    assert.equal(fresh.status, 201);
    const freshOrder = (await getJson(rest, "/v1/order", `uuid=${fresh.body.uuid}`)).body;
    const oldUuids = new Set<string>();
    for (const order of before.values()) {
      const o = order as { uuid: string; trades: { uuid: string }[] };
      oldUuids.add(o.uuid);
      for (const t of o.trades) oldUuids.add(t.uuid);
    }
    assert.ok(!oldUuids.has(freshOrder.uuid), "order uuid is new");
    for (const t of freshOrder.trades) assert.ok(!oldUuids.has(t.uuid), "trade uuid is new");
    // The resumed resting order can still be cancelled, and its lock is released.
    const cancel = await signedQuery(rest, "DELETE", "/v1/order", KEYS, "identifier=keep-1");
    assert.equal(cancel.status, 200);
    await cancel.body?.cancel();
    const krw = (await getJson(rest, "/v1/accounts")).body[0];
    assert.equal(krw.locked, "0");
  } finally {
    await proc.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--state: a corrupt file is a start-up error, never a silent fresh start", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const [text, reason] of [["{not json", /not JSON/], ['{"version":1}', /uuidSeed/]]) {
      const stateFile = `${dir}/bad.json`;
      await Deno.writeTextFile(stateFile, text as string);
      const proc = startSimProcess(stateFile);
      const status = await proc.exited();
      assert.equal(status.code, 1);
      const output = proc.lines.join("\n");
      assert.match(output, /cannot start: state file .*bad\.json is corrupt/);
      assert.match(output, reason as RegExp);
      assert.equal(await Deno.readTextFile(stateFile), text, "the file is left as it was");
      await assert.rejects(
        () => startSimulator({ rate: 0, stateFile }),
        StateFileError,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--state: a resting order filled by market trades is persisted without a request", async () => {
  const dir = await Deno.makeTempDir();
  const stateFile = `${dir}/state.json`;
  const sim = await startSimulator({ rate: 0, markets: ["KRW-BTC"], stateFile });
  let copy;
  try {
    const price = await btcPrice(sim.restUrl, 0.5);
    const created = await post(sim.restUrl, "/v1/orders", {
      market: "KRW-BTC",
      side: "bid",
      ord_type: "limit",
      price,
      volume: "0.0002",
      identifier: "maker-1",
    });
    assert.equal(created.status, 201);
    sim.injectTrade({ market: "KRW-BTC", price: Number(price), volume: 1, side: "ASK" });
    await new Promise((resolve) => setTimeout(resolve, 0));
    // A copy of the file as it is now (the first simulator still runs) resumes the filled order.
    await Deno.copyFile(stateFile, `${dir}/copy.json`);
    copy = await startSimulator({
      rate: 0,
      markets: ["KRW-BTC"],
      stateFile: `${dir}/copy.json`,
      krw: 5,
      balances: { "KRW-BTC": "7" },
    });
    const order = await getJson(copy.restUrl, "/v1/order", "identifier=maker-1");
    assert.equal(order.body.state, "done");
    assert.equal(order.body.executed_volume, "0.0002");
    assert.equal(order.body.trades.length, 1);
    const btc = (await getJson(copy.restUrl, "/v1/accounts")).body.find((a: { currency: string }) =>
      a.currency === "BTC"
    );
    assert.equal(btc.balance, "0.0002", "a loaded state ignores --balances");
    const krw = (await getJson(copy.restUrl, "/v1/accounts")).body[0];
    assert.notEqual(krw.balance, "5", "a loaded state ignores --krw");
  } finally {
    await copy?.close();
    await sim.close();
    await Deno.remove(dir, { recursive: true });
  }
});
