/**
 * `deno task lost-order`: a person gives the uuid of a lost order they saw on Upbit's site. The
 * command is refused unless it names a lost, unresolved live order; accepted, it only makes the
 * order due for its re-check, which adopts Upbit's order under that uuid only when it is the order
 * upbot asked for (never a hand-made order, another market's, another side's or volume's). Run
 * against the simulator, where Upbit never shows the lost order again by identifier (the look-ups
 * by identifier are answered `order_not_found`, as in the case this command is for).
 */
import assert from "node:assert/strict";
import { controlDirLayout, ControlDirWatcher } from "../lib/control/command_dir.ts";
import {
  applyControlCommandOnce,
  ControlCommand,
  newControlCommand,
} from "../lib/control/commands.ts";
import { entryHaltReason } from "../lib/control/trading_state.ts";
import type { Sql } from "../lib/db/connect.ts";
import {
  closerInputs,
  readAccountBalances,
  unsettledLiveOrders,
} from "../lib/execution/closer_inputs.ts";
import { recheckLostOrders, unresolvedOrders } from "../lib/execution/lost_orders.ts";
import { decideCloses } from "../lib/execution/position_closer.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { setLogSink } from "../lib/log.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import {
  attemptById,
  type AttemptRow,
  insertAttempt,
  installationId,
  transitionAttempt,
} from "../lib/store/order_attempts.ts";
import { UpbitApiError } from "../lib/upbit/errors.ts";
import type { OrderRef, OrderRequest, UpbitRest } from "../lib/upbit/rest.ts";
import { parseControlArgs, sendControlRequest } from "../tools/control.ts";
import { dbTest } from "./_db.ts";
import { signedPost } from "./_sim_auth.ts";
import { pendingAttempt, placeLive, type SimHandle, startSim } from "./_live_orders.ts";

const MARKETS = ["KRW-BTC", "KRW-ETH"];

/** As the executor leaves an attempt whose create answer was lost: failed / order_lost, no uuid. */
async function loseAttempt(sql: Sql, a: AttemptRow): Promise<void> {
  await transitionAttempt(sql, a.id, "pending", "sent");
  await transitionAttempt(sql, a.id, "sent", "unknown");
  await transitionAttempt(sql, a.id, "unknown", "failed", { reason: "order_lost" });
}

/** Creates `body` at the simulator and returns its uuid. */
async function createAtUpbit(h: SimHandle, body: Record<string, string>): Promise<string> {
  const result = await h.rest.postOrder(body as unknown as OrderRequest);
  assert.equal(result.kind, "accepted");
  return result.kind === "accepted" ? result.order.uuid : "";
}

/** Creates a sell on the simulator as a person does on Upbit's site: without an identifier. */
async function sellByHand(h: SimHandle, market: string, volume: string): Promise<string> {
  const body = { market, side: "ask", ord_type: "market", volume };
  const response = await signedPost(h.sim.restUrl, "/v1/orders", h.sim, body);
  const order = await response.json();
  assert.equal(response.status, 201, JSON.stringify(order));
  return order.uuid;
}

/** An error answer of Upbit's. */
function upbitError(httpStatus: number, code: string): UpbitApiError {
  return new UpbitApiError({
    httpStatus,
    code,
    message: code,
    remainingReq: null,
    meta: { http_status: httpStatus, remaining_req: null, latency_ms: 0 },
  });
}

/**
 * `rest`, except that Upbit answers `order_not_found` to every look-up by identifier, and 400 to a
 * look-up of any of `refused`.
 */
function blindToIdentifiers(rest: UpbitRest, refused: readonly string[] = []): UpbitRest {
  return new Proxy(rest, {
    get(target, prop) {
      if (prop === "getOrder") {
        return (ref: OrderRef) => {
          if (ref.identifier !== undefined) {
            return Promise.reject(upbitError(404, "order_not_found"));
          }
          if (refused.includes(ref.uuid)) {
            return Promise.reject(upbitError(400, "invalid_parameter"));
          }
          return target.getOrder(ref);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

async function hintRow(sql: Sql, id: number) {
  const [row] = await sql<
    { operator_uuid: string | null; operator_hint_refused: string | null; checks: number }[]
  >`select operator_uuid, operator_hint_refused, checks from lost_order_checks
    where attempt_id = ${id}`;
  return row;
}

async function btcBalance(h: SimHandle): Promise<string | undefined> {
  const { data } = await h.rest.getAccounts();
  return data.find((a) => a.currency === "BTC")?.balance;
}

/** What a flatten's closer would do on KRW-BTC now. */
async function btcCloses(sql: Sql, h: SimHandle) {
  const input = await closerInputs(sql, "live", () => readAccountBalances(h.rest), {
    flatten: true,
  });
  return decideCloses(input).filter((d) => d.market === "KRW-BTC");
}

dbTest(
  "lost-order: a lost sell that filled, found by the uuid a person gave through the control directory, enters the ledger and is not sold again",
  async (db) => {
    // The owner holds 0.5 BTC of their own: a second sale of upbot's coins would sell theirs.
    const h = await startSim({ markets: MARKETS, balances: { "KRW-BTC": "0.5" } });
    const dataDir = await Deno.makeTempDir({ prefix: "upbot_lost_order_" });
    const restoreLog = setLogSink(() => {});
    const layout = controlDirLayout(dataDir);
    const watcher = new ControlDirWatcher({ layout, sql: db.sql, pollIntervalMs: 50 });
    try {
      const rest = blindToIdentifiers(h.rest);
      const buy = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
      const bought = buy.executed_volume!;
      const sell = await pendingAttempt(db.sql, { market: "KRW-BTC", side: "ask", volume: bought });
      // The sell reached Upbit and filled; its create answer was lost, so upbot has no uuid.
      const uuid = await createAtUpbit(h, sell.request_json as Record<string, string>);
      await loseAttempt(db.sql, sell);
      assert.equal(await btcBalance(h), "0.5", "only the owner's coins are left");
      let now = Date.now();
      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 1,
        found: 0,
      }, "Upbit shows it by neither identifier");
      assert.deepEqual((await btcCloses(db.sql, h)).map((d) => d.kind), ["hold"], "held");

      // The person saw it on Upbit's site: `deno task lost-order`, applied by the running upbot.
      await watcher.claim();
      watcher.start();
      const request = parseControlArgs([
        "lost-order",
        "--identifier",
        sell.identifier,
        "--uuid",
        uuid.toUpperCase(),
      ]);
      const { ack } = await sendControlRequest(layout, request, 10_000);
      assert.equal(ack?.ok, true, ack?.message);
      assert.match(ack?.message ?? "", /will be checked at Upbit under uuid /);
      assert.equal((await hintRow(db.sql, sell.id))?.operator_uuid, uuid);
      assert.equal((await attemptById(db.sql, sell.id))?.executed_volume, null, "nothing adopted");

      // Due at once, not a minute after the last check.
      now += 1_000;
      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 1,
        found: 1,
      });
      const adopted = await attemptById(db.sql, sell.id);
      assert.equal(adopted?.executed_volume, bought);
      assert.equal(adopted?.uuid, uuid);
      assert.equal((await ledgerPosition(db.sql, "KRW-BTC"))?.openVolume, "0");
      assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC"), undefined, "not held");
      assert.deepEqual(await unresolvedOrders(db.sql, "KRW-BTC"), []);
      // Nothing left to close: a flatten's closer sells nothing, the owner's coins stay.
      assert.deepEqual(await btcCloses(db.sql, h), []);
      assert.equal(await btcBalance(h), "0.5");
      const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "lost_order_found");
      assert.match(alarm?.message ?? "", /by the uuid a person gave/);

      // Found now: a second hint is refused with its sentence, through the directory too.
      const again = await sendControlRequest(layout, request, 10_000);
      assert.equal(again.ack?.ok, false);
      assert.match(
        again.ack?.message ?? "",
        new RegExp(
          `^lost-order refused: ${sell.identifier} was already found at Upbit \\(uuid=${uuid}\\) at .+; nothing to do$`,
        ),
      );
    } finally {
      await watcher.stop();
      restoreLog();
      await Deno.remove(dataDir, { recursive: true });
      await h.close();
    }
  },
);

dbTest(
  "lost-order: a uuid naming another order (by hand, another market or side) is never adopted",
  async (db) => {
    const h = await startSim({ markets: MARKETS, balances: { "KRW-BTC": "0.5" } });
    try {
      const rest = blindToIdentifiers(h.rest);
      const buy = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
      const bought = buy.executed_volume!;
      const sell = await pendingAttempt(db.sql, { market: "KRW-BTC", side: "ask", volume: bought });
      await loseAttempt(db.sql, sell); // its create never reached Upbit
      // The owner sold some of their own coins by hand (no identifier), and bought ETH.
      const handSale = await sellByHand(h, "KRW-BTC", "0.01");
      const ethBuy = await createAtUpbit(h, {
        market: "KRW-ETH",
        side: "bid",
        ord_type: "price",
        price: "6000",
        identifier: "someone-else-1",
      });
      const hint = async (uuid: string) => {
        const record = await applyControlCommandOnce(
          db.sql,
          newControlCommand({ action: "lost-order", identifier: sell.identifier, uuid }),
          "cli",
        );
        assert.equal(record.kind, "applied", record.ack.message);
      };
      let now = Date.now();

      await hint(handSale);
      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 1,
        found: 0,
      });
      assert.equal((await attemptById(db.sql, sell.id))?.executed_volume, null, "not adopted");
      assert.equal((await attemptById(db.sql, sell.id))?.uuid, null);
      assert.equal((await ledgerPosition(db.sql, "KRW-BTC"))?.openVolume, bought, "untouched");
      assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC")?.sell, true, "still held");
      assert.deepEqual(await unresolvedOrders(db.sql, "KRW-BTC"), [sell.identifier]);
      let alarm = (await activeAlarms(db.sql)).find((a) => a.code === "lost_order_hint_refused");
      assert.equal(alarm?.market, "KRW-BTC");
      assert.match(alarm?.message ?? "", new RegExp(`the uuid a person gave, ${handSale}, is not`));
      assert.match(alarm?.message ?? "", new RegExp(`volume 0.01 != ${bought}`));
      assert.match(alarm?.message ?? "", /identifier none, not one of upbot's/);
      assert.match((await hintRow(db.sql, sell.id))?.operator_hint_refused ?? "", /volume/);
      // A person's wrong uuid is not an identifier conflict: no halt anywhere.
      assert.equal(await entryHaltReason(db.sql, "KRW-BTC"), null);
      assert.equal(await entryHaltReason(db.sql, "KRW-ETH"), null);
      assert.equal(
        (await activeAlarms(db.sql)).some((a) => a.code === "identifier_conflict"),
        false,
      );
      // A refused uuid is not asked for again (nor alarmed about every minute).
      now += 61_000;
      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 1,
        found: 0,
      });
      alarm = (await activeAlarms(db.sql)).find((a) => a.code === "lost_order_hint_refused");
      assert.equal(alarm?.count, 1);

      // A second, also wrong, uuid replaces the first and is checked at once.
      await hint(ethBuy);
      assert.equal((await hintRow(db.sql, sell.id))?.operator_hint_refused, null);
      now += 1_000;
      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 1,
        found: 0,
      });
      alarm = (await activeAlarms(db.sql)).find((a) => a.code === "lost_order_hint_refused");
      assert.match(alarm?.message ?? "", /market KRW-ETH != KRW-BTC, side bid != ask/);
      assert.match(alarm?.message ?? "", /identifier someone-else-1 != /);
      assert.equal((await attemptById(db.sql, sell.id))?.executed_volume, null, "not adopted");
      assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC")?.sell, true, "still held");
      assert.equal(await entryHaltReason(db.sql, "KRW-ETH"), null);

      // A hand sale of exactly the lost sell's volume, after it: alike in every field the attempt
      // asked for, but made without upbot's identifier, so not upbot's (adopted, the ledger would
      // drop coins upbot still holds).
      const lookAlike = await sellByHand(h, "KRW-BTC", bought);
      await hint(lookAlike);
      now += 1_000;
      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 1,
        found: 0,
      });
      alarm = (await activeAlarms(db.sql)).find((a) => a.code === "lost_order_hint_refused");
      assert.match(
        alarm?.message ?? "",
        new RegExp(
          `the uuid a person gave, ${lookAlike}, is not the order upbot asked for \\(identifier none, not one of upbot's\\)`,
        ),
      );
      assert.equal((await attemptById(db.sql, sell.id))?.executed_volume, null, "not adopted");
      assert.equal((await ledgerPosition(db.sql, "KRW-BTC"))?.openVolume, bought, "untouched");
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "lost-order: a uuid naming our order still open keeps it held until it is final",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      const rest = blindToIdentifiers(h.rest);
      const inst = await installationId(db.sql);
      const identifier = `paper-${inst}-990002-ENTER_LONG`;
      const { data: [ticker] } = await h.rest.getTicker({ markets: ["KRW-BTC"] });
      // A limit buy far below the market rests on the book (upbot's own market orders end at once).
      const price = String(Math.floor(ticker!.trade_price / 2 / 1000) * 1000);
      const request = {
        market: "KRW-BTC",
        side: "bid",
        ord_type: "limit",
        price,
        volume: "0.0001",
        identifier,
      };
      const a = await insertAttempt(db.sql, {
        symbol: "KRW-BTC",
        action: "ENTER_LONG",
        mode: "live",
        side: "bid",
        ord_type: "limit" as never,
        price,
        volume: "0.0001",
        paper_trade_id: null,
        identifier,
        state: "pending",
        request_json: request,
      });
      const uuid = await createAtUpbit(h, request);
      await loseAttempt(db.sql, a!);
      const record = await applyControlCommandOnce(
        db.sql,
        newControlCommand({ action: "lost-order", identifier, uuid }),
        "cli",
      );
      assert.equal(record.kind, "applied", record.ack.message);
      let now = Date.now();

      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 1,
        found: 0,
      });
      assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC")?.buy, true, "held");
      assert.equal((await hintRow(db.sql, a!.id))?.operator_hint_refused, null, "not refused");
      assert.equal((await activeAlarms(db.sql)).length, 0);

      await h.rest.deleteOrder({ uuid });
      now += 61_000;
      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 1,
        found: 1,
      });
      assert.equal((await attemptById(db.sql, a!.id))?.uuid, uuid);
      assert.equal((await attemptById(db.sql, a!.id))?.executed_volume, "0");
      assert.equal((await unsettledLiveOrders(db.sql)).get("KRW-BTC"), undefined);
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "lost-order: a uuid Upbit refuses to look up is refused and does not stop the other lost orders' checks",
  async (db) => {
    const h = await startSim({ markets: MARKETS });
    try {
      const bad = "0b7c5e1a-1111-4222-8333-444455556666";
      const rest = blindToIdentifiers(h.rest, [bad]);
      const first = await pendingAttempt(db.sql, { market: "KRW-ETH", side: "bid", krw: 10_000 });
      await loseAttempt(db.sql, first);
      // A second lost order, whose uuid upbot knows: Upbit shows it by that uuid.
      const second = await pendingAttempt(db.sql, { market: "KRW-BTC", side: "bid", krw: 10_000 });
      const uuid = await createAtUpbit(h, second.request_json as Record<string, string>);
      await transitionAttempt(db.sql, second.id, "pending", "sent");
      await transitionAttempt(db.sql, second.id, "sent", "unknown", { uuid });
      await transitionAttempt(db.sql, second.id, "unknown", "failed", { reason: "order_lost" });
      const record = await applyControlCommandOnce(
        db.sql,
        newControlCommand({ action: "lost-order", identifier: first.identifier, uuid: bad }),
        "cli",
      );
      assert.equal(record.kind, "applied", record.ack.message);

      let now = Date.now();
      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 2,
        found: 1,
      });
      assert.ok(Number((await attemptById(db.sql, second.id))?.executed_volume) > 0);
      const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "lost_order_hint_refused");
      assert.equal(alarm?.market, "KRW-ETH");
      assert.match(alarm?.message ?? "", /Upbit refused to look it up: invalid_parameter/);
      assert.deepEqual(await unresolvedOrders(db.sql, "KRW-ETH"), [first.identifier], "held");
      // Not asked for again.
      now += 61_000;
      assert.deepEqual(await recheckLostOrders(db.sql, rest, h.log, { nowMs: now }), {
        checked: 1,
        found: 0,
      });
    } finally {
      await h.close();
    }
  },
);

dbTest("lost-order: refused with its sentence unless it names a lost live order", async (db) => {
  const h = await startSim({ markets: MARKETS });
  try {
    const buy = await placeLive(db.sql, h.rest, { market: "KRW-BTC", side: "bid", krw: 10_000 });
    const lost = await pendingAttempt(db.sql, { market: "KRW-ETH", side: "bid", krw: 10_000 });
    await loseAttempt(db.sql, lost);
    const uuid = "9ca023a5-851b-4fec-9f0a-48cd83c2eaae";
    const refusal = async (identifier: string, u = uuid) => {
      const record = await applyControlCommandOnce(
        db.sql,
        newControlCommand({ action: "lost-order", identifier, uuid: u }),
        "cli",
      );
      assert.equal(record.kind, "refused");
      assert.equal(record.ack.ok, false);
      return record.ack.message;
    };
    const inst = lost.identifier.split("-")[1];
    assert.equal(
      await refusal(`paper-${inst}-424242-EXIT_LONG`),
      `lost-order refused: upbot has no order with the identifier paper-${inst}-424242-EXIT_LONG`,
    );
    assert.equal(
      await refusal(buy.identifier),
      `lost-order refused: ${buy.identifier} is not a lost order (its state is ${buy.state}); only an order upbot gave up as failed / order_lost takes a uuid`,
    );
    assert.equal(
      await refusal(lost.identifier, buy.uuid!),
      `lost-order refused: ${buy.uuid} is the uuid of upbot's order ${buy.identifier}, not of ${lost.identifier}`,
    );
    await db.sql`update upbit_order_attempts set uuid = ${uuid} where id = ${lost.id}`;
    const other = "0b7c5e1a-1111-4222-8333-444455556666";
    assert.equal(
      await refusal(lost.identifier, other),
      `lost-order refused: Upbit gave ${lost.identifier} the uuid ${uuid} when it was created; ${other} is another order`,
    );
    await db.sql`insert into lost_order_checks (attempt_id, checks, resolved_at)
      values (${lost.id}, 1, '2026-01-02T03:04:05Z')`;
    assert.equal(
      await refusal(lost.identifier),
      `lost-order refused: ${lost.identifier} was already found at Upbit (uuid=${uuid}) at 2026-01-02T03:04:05.000Z; nothing to do`,
    );
    // Nothing was stored by any of them.
    const [hints] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from lost_order_checks where operator_uuid is not null`;
    assert.equal(hints?.n, 0);
  } finally {
    await h.close();
  }
});

Deno.test("lost-order: the tool and the command schema take only an identifier and a uuid", () => {
  const identifier = "paper-abcd2345-17-EXIT_LONG";
  const uuid = "9ca023a5-851b-4fec-9f0a-48cd83c2eaae";
  assert.deepEqual(
    parseControlArgs([
      "lost-order",
      "--identifier",
      identifier,
      "--uuid",
      ` ${uuid.toUpperCase()}`,
    ]),
    { action: "lost-order", identifier, uuid },
  );
  assert.deepEqual(
    parseControlArgs(["lost-order", "--identifier", "paper-abcd2345-close-3-r1", "--uuid", uuid]),
    { action: "lost-order", identifier: "paper-abcd2345-close-3-r1", uuid },
  );
  assert.throws(
    () => parseControlArgs(["lost-order", "--identifier", identifier, "--uuid", "not-a-uuid"]),
    /lost-order needs --uuid with the order's uuid as Upbit shows it/,
  );
  assert.throws(
    () => parseControlArgs(["lost-order", "--identifier", "KRW-BTC", "--uuid", uuid]),
    /lost-order needs --identifier with the identifier of the order_lost alarm/,
  );
  assert.throws(() => parseControlArgs(["lost-order", "--uuid", uuid]), /needs --identifier/);
  assert.throws(
    () =>
      parseControlArgs(["lost-order", "--identifier", identifier, "--uuid", uuid, "--reason", "x"]),
    /lost-order takes only --identifier and --uuid/,
  );
  assert.throws(
    () => parseControlArgs(["halt", "--reason", "x", "--uuid", uuid]),
    /halt takes no --identifier or --uuid/,
  );
  // The running upbot checks the file again: a hand-written command with a bad uuid is rejected.
  const envelope = { version: 1, id: crypto.randomUUID(), issued_at: new Date().toISOString() };
  const parse = (fields: Record<string, string>) =>
    ControlCommand.safeParse({ ...envelope, action: "lost-order", ...fields }).success;
  assert.equal(parse({ identifier, uuid }), true);
  assert.equal(parse({ identifier, uuid: uuid.toUpperCase() }), false);
  assert.equal(parse({ identifier, uuid: "1" }), false);
  assert.equal(parse({ identifier: "paper-x", uuid }), false);
  assert.equal(parse({ identifier, uuid, reason: "x" }), false);
});
