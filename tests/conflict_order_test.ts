/**
 * @module `deno task conflict-order`: a person's verdict on a live sell in conflict, which holds
 * its market's sells until then (tests/conflict_sell_test.ts). `--ours`: the order found under
 * its identifier is the sell; the order-poller adopts its fills once final (after the minimal
 * checks), and only then is the hold released, so nothing sells the volume again. `--not-ours`:
 * the sell never executed; the hold is released and the closer sells the position again under a
 * new identifier. Neither lifts the conflict's halt. Run against the simulator, with the owner
 * holding 0.5 BTC of their own: a second sale would sell theirs.
 */
import assert from "node:assert/strict";
import { controlDirLayout, ControlDirWatcher } from "../lib/control/command_dir.ts";
import {
  applyControlCommandOnce,
  ControlCommand,
  newControlCommand,
} from "../lib/control/commands.ts";
import type { ConflictVerdict } from "../lib/control/conflict_verdict.ts";
import { entryHaltReason } from "../lib/control/trading_state.ts";
import type { Sql } from "../lib/db/connect.ts";
import { dec } from "../lib/decimal.ts";
import { unsettledLiveOrders } from "../lib/execution/closer_inputs.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { setLogSink } from "../lib/log.ts";
import { activeAlarms } from "../lib/store/alarms.ts";
import { attemptById, type AttemptRow, insertAttempt } from "../lib/store/order_attempts.ts";
import { parseControlArgs, sendControlRequest } from "../tools/control.ts";
import { dbTest } from "./_db.ts";
import {
  type ConflictSell,
  conflictSell,
  placeLive,
  type SimHandle,
  startSim,
} from "./_live_orders.ts";

const BTC = "KRW-BTC";
const OWNER_BTC = "0.5";

async function btcBalance(h: SimHandle): Promise<string> {
  const { data } = await h.rest.getAccounts();
  return data.find((a) => a.currency === "BTC")?.balance ?? "0";
}

async function attempts(sql: Sql): Promise<AttemptRow[]> {
  return await sql<AttemptRow[]>`select * from upbit_order_attempts order by id`;
}

/** Passes of the conflict's executor (its live closer too) and of an order-poller. */
async function passes(sql: Sql, h: SimHandle, c: ConflictSell, n: number): Promise<void> {
  const poller = new OrderPoller({ sql, rest: h.rest, maxPolls: 50, log: h.log });
  for (let i = 0; i < n; i++) {
    await c.executor.runOnce();
    await poller.pollOnce();
  }
}

/** Applies a conflict-order as the running upbot does; its acknowledgement. */
async function verdict(sql: Sql, identifier: string, v: ConflictVerdict) {
  return await applyControlCommandOnce(
    sql,
    newControlCommand({ action: "conflict-order", identifier, verdict: v }),
    "cli",
  );
}

async function verdictRow(sql: Sql, id: number) {
  const [row] = await sql<
    { verdict: string; refused: string | null; adopted_at: Date | null }[]
  >`select verdict, refused, adopted_at from conflict_verdicts where attempt_id = ${id}`;
  return row;
}

dbTest(
  "conflict-order --ours through the control directory: the sell's fills enter the ledger, the hold is released, nothing is sold again",
  async (db) => {
    const h = await startSim({ markets: [BTC], balances: { [BTC]: OWNER_BTC } });
    const dataDir = await Deno.makeTempDir({ prefix: "upbot_conflict_order_" });
    const restoreLog = setLogSink(() => {});
    const layout = controlDirLayout(dataDir);
    const watcher = new ControlDirWatcher({ layout, sql: db.sql, pollIntervalMs: 50 });
    try {
      const c = await conflictSell(db.sql, h, { market: BTC, found: "sell" });
      const bought = c.buy.executed_volume!;
      assert.equal(await btcBalance(h), OWNER_BTC, "the sell itself sold upbot's coins");
      await passes(db.sql, h, c, 3);
      assert.equal((await unsettledLiveOrders(db.sql)).get(BTC)?.sell, true, "held");
      assert.equal((await ledgerPosition(db.sql, BTC))?.openVolume, bought);

      // The person found the sell at Upbit: `deno task conflict-order --ours`.
      await watcher.claim();
      watcher.start();
      const request = parseControlArgs([
        "conflict-order",
        "--identifier",
        c.sell.identifier,
        "--ours",
      ]);
      const { ack } = await sendControlRequest(layout, request, 10_000);
      assert.equal(ack?.ok, true, ack?.message);
      assert.match(ack?.message ?? "", new RegExp(`judged ours: .* ${c.foundUuid} `));
      assert.equal((await verdictRow(db.sql, c.sell.id))?.verdict, "ours");
      assert.equal((await unsettledLiveOrders(db.sql)).get(BTC)?.sell, true, "held until adopted");

      await passes(db.sql, h, c, 3);
      const adopted = await attemptById(db.sql, c.sell.id);
      assert.equal(adopted?.state, "conflict");
      assert.equal(adopted?.uuid, c.foundUuid);
      assert.equal(adopted?.executed_volume, bought);
      assert.equal(adopted?.final_state, "done");
      assert.ok(dec(adopted?.paid_fee ?? "0") > 0n, "its fee is counted");
      assert.ok(adopted?.avg_price !== null);
      assert.ok((await verdictRow(db.sql, c.sell.id))?.adopted_at instanceof Date);
      assert.equal((await ledgerPosition(db.sql, BTC))?.openVolume, "0", "the sale counts");
      assert.equal((await unsettledLiveOrders(db.sql)).get(BTC), undefined, "released");
      const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "conflict_resolved");
      assert.match(alarm?.message ?? "", new RegExp(`uuid=${c.foundUuid}, done, executed`));
      assert.match((await entryHaltReason(db.sql, BTC)) ?? "", /identifier conflict/, "halted");

      // More passes: nothing sells again; the owner's coins stay.
      await passes(db.sql, h, c, 5);
      assert.deepEqual((await attempts(db.sql)).map((a) => Number(a.id)), [c.buy.id, c.sell.id]);
      assert.equal(await btcBalance(h), OWNER_BTC);

      // Decided: a second verdict is refused with its sentence, through the directory too.
      const again = await sendControlRequest(layout, request, 10_000);
      assert.equal(again.ack?.ok, false);
      assert.match(
        again.ack?.message ?? "",
        new RegExp(
          `^conflict-order refused: ${c.sell.identifier} was already decided ours by cli at .+; nothing to do$`,
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
  "conflict-order --not-ours: someone else's buy under the identifier; the hold is released and the closer sells the position",
  async (db) => {
    const h = await startSim({ markets: [BTC], balances: { [BTC]: OWNER_BTC } });
    try {
      const c = await conflictSell(db.sql, h, { market: BTC, found: "foreign buy" });
      const bought = c.buy.executed_volume!;
      const before = await btcBalance(h);
      await passes(db.sql, h, c, 3);
      assert.equal((await attempts(db.sql)).length, 2, "held: nothing sold");
      assert.equal(await btcBalance(h), before);

      const record = await verdict(db.sql, c.sell.identifier, "not-ours");
      assert.equal(record.kind, "applied", record.ack.message);
      assert.match(record.ack.message, /judged not ours: .* the closer sells its position again/);
      assert.equal((await unsettledLiveOrders(db.sql)).get(BTC), undefined, "released");

      await passes(db.sql, h, c, 6);
      const [, sell, close] = await attempts(db.sql);
      assert.equal(sell?.state, "conflict", "the conflict sell is never sent again");
      assert.equal(close?.action, "CLOSE");
      assert.notEqual(close?.identifier, c.sell.identifier);
      assert.equal(close?.executed_volume, bought);
      assert.equal((await ledgerPosition(db.sql, BTC))?.openVolume, "0");
      assert.equal(dec(await btcBalance(h)), dec(before) - dec(bought), "only upbot's sold");
      assert.match((await entryHaltReason(db.sql, BTC)) ?? "", /identifier conflict/, "halted");
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "conflict-order --ours naming an order that is not a sell is refused; the hold stays",
  async (db) => {
    const h = await startSim({ markets: [BTC], balances: { [BTC]: OWNER_BTC } });
    try {
      const c = await conflictSell(db.sql, h, { market: BTC, found: "foreign buy" });
      const bought = c.buy.executed_volume!;
      const record = await verdict(db.sql, c.sell.identifier, "ours");
      assert.equal(record.kind, "applied", record.ack.message);
      await passes(db.sql, h, c, 3);

      const sell = await attemptById(db.sql, c.sell.id);
      assert.equal(sell?.executed_volume, null, "not adopted");
      assert.equal(sell?.uuid, null);
      assert.equal((await ledgerPosition(db.sql, BTC))?.openVolume, bought, "untouched");
      assert.equal((await unsettledLiveOrders(db.sql)).get(BTC)?.sell, true, "still held");
      assert.equal((await attempts(db.sql)).length, 2, "nothing sold");
      assert.match((await verdictRow(db.sql, c.sell.id))?.refused ?? "", /^side bid != ask/);
      const alarm = (await activeAlarms(db.sql)).find((a) => a.code === "conflict_verdict_refused");
      assert.equal(alarm?.market, BTC);
      assert.equal(
        alarm?.message,
        `Conflict sell ${c.sell.identifier} judged ours, but Upbit's order ${c.foundUuid} is not adopted (side bid != ask); KRW-BTC's sells stay held: check the order at Upbit and give a verdict again`,
      );
      // Not asked about again.
      await passes(db.sql, h, c, 2);
      const refused = (await activeAlarms(db.sql)).find((a) =>
        a.code === "conflict_verdict_refused"
      );
      assert.equal(refused?.count, 1);

      // A refused verdict may be replaced: the person looks again and finds it is not ours.
      const replaced = await verdict(db.sql, c.sell.identifier, "not-ours");
      assert.equal(replaced.kind, "applied", replaced.ack.message);
      assert.equal((await unsettledLiveOrders(db.sql)).get(BTC), undefined, "released");
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "conflict-order --ours naming an order under another identifier is refused",
  async (db) => {
    const h = await startSim({ markets: [BTC], balances: { [BTC]: OWNER_BTC } });
    try {
      const c = await conflictSell(db.sql, h, { market: BTC, found: "sell" });
      // As if the executor had recorded another sell of the market, under another program's
      // identifier.
      const other = await h.rest.postOrder({
        market: BTC,
        side: "ask",
        ord_type: "market",
        volume: "0.001",
        identifier: "someone-else-1",
      } as never);
      assert.equal(other.kind, "accepted");
      const uuid = other.kind === "accepted" ? other.order.uuid : "";
      await db.sql`update upbit_order_attempts
        set response_json = jsonb_set(response_json, '{uuid}', to_jsonb(${uuid}::text))
        where id = ${c.sell.id}`;
      assert.equal((await verdict(db.sql, c.sell.identifier, "ours")).kind, "applied");
      await passes(db.sql, h, c, 2);
      assert.equal((await attemptById(db.sql, c.sell.id))?.executed_volume, null, "not adopted");
      assert.equal((await unsettledLiveOrders(db.sql)).get(BTC)?.sell, true, "still held");
      assert.match(
        (await verdictRow(db.sql, c.sell.id))?.refused ?? "",
        new RegExp(`^identifier someone-else-1 != ${c.sell.identifier}$`),
      );
    } finally {
      await h.close();
    }
  },
);

dbTest(
  "conflict-order: refused with its sentence unless it names an undecided live sell in conflict",
  async (db) => {
    const h = await startSim({ markets: [BTC] });
    try {
      const buy = await placeLive(db.sql, h.rest, { market: BTC, side: "bid", krw: 10_000 });
      const sold = await placeLive(db.sql, h.rest, {
        market: BTC,
        side: "ask",
        volume: buy.executed_volume!,
      });
      const inst = buy.identifier.split("-")[1];
      const shadow = await insertAttempt(db.sql, {
        symbol: BTC,
        action: "ENTER_LONG",
        mode: "shadow",
        side: "bid",
        ord_type: "price",
        price: "10000",
        volume: null,
        paper_trade_id: null,
        identifier: `paper-${inst}-777777-ENTER_LONG`,
        state: "logged",
        request_json: {},
      });
      const refusal = async (identifier: string, v: ConflictVerdict = "not-ours") => {
        const record = await verdict(db.sql, identifier, v);
        assert.equal(record.kind, "refused");
        assert.equal(record.ack.ok, false);
        return record.ack.message;
      };
      assert.equal(
        await refusal(`paper-${inst}-424242-EXIT_LONG`),
        `conflict-order refused: upbot has no order with the identifier paper-${inst}-424242-EXIT_LONG`,
      );
      assert.equal(
        await refusal(shadow!.identifier),
        `conflict-order refused: ${
          shadow!.identifier
        } is a shadow order, never sent to Upbit as a real order`,
      );
      assert.equal(
        await refusal(buy.identifier, "ours"),
        `conflict-order refused: ${buy.identifier} is a buy; only a sell in conflict holds its market and takes a verdict`,
      );
      assert.equal(
        await refusal(sold.identifier),
        `conflict-order refused: ${sold.identifier} is not in conflict (its state is ${sold.state}); only a sell upbot judged an identifier conflict takes a verdict`,
      );
      await db
        .sql`update upbit_order_attempts set state = 'conflict', reason = 'identifier_conflict'
      where id = ${sold.id}`;
      await db.sql`insert into conflict_verdicts (attempt_id, verdict, decided_by, decided_at)
      values (${sold.id}, 'not-ours', 'cli', '2026-01-02T03:04:05Z')`;
      assert.equal(
        await refusal(sold.identifier, "ours"),
        `conflict-order refused: ${sold.identifier} was already decided not-ours by cli at 2026-01-02T03:04:05.000Z; nothing to do`,
      );
      const [n] = await db.sql<{ n: number }[]>`select count(*)::int as n from conflict_verdicts`;
      assert.equal(n?.n, 1, "nothing stored by any of them");
    } finally {
      await h.close();
    }
  },
);

Deno.test("conflict-order: the tool and the command schema take an identifier and one verdict", () => {
  const identifier = "paper-abcd2345-17-EXIT_LONG";
  assert.deepEqual(
    parseControlArgs(["conflict-order", "--identifier", ` ${identifier}`, "--ours"]),
    { action: "conflict-order", identifier, verdict: "ours" },
  );
  assert.deepEqual(
    parseControlArgs(["conflict-order", "--identifier", identifier, "--not-ours"]),
    { action: "conflict-order", identifier, verdict: "not-ours" },
  );
  assert.throws(
    () => parseControlArgs(["conflict-order", "--identifier", identifier]),
    /conflict-order needs exactly one of --ours .* or --not-ours/,
  );
  assert.throws(
    () => parseControlArgs(["conflict-order", "--identifier", identifier, "--ours", "--not-ours"]),
    /needs exactly one of/,
  );
  assert.throws(
    () => parseControlArgs(["conflict-order", "--identifier", "KRW-BTC", "--ours"]),
    /conflict-order needs --identifier with the identifier of the identifier_conflict alarm/,
  );
  assert.throws(
    () =>
      parseControlArgs([
        "conflict-order",
        "--identifier",
        identifier,
        "--ours",
        "--market",
        "KRW-ETH",
      ]),
    /conflict-order takes only --identifier and --ours or --not-ours/,
  );
  assert.throws(
    () => parseControlArgs(["halt", "--reason", "x", "--ours"]),
    /halt takes no --ours or --not-ours/,
  );
  const envelope = { version: 1, id: crypto.randomUUID(), issued_at: new Date().toISOString() };
  const parse = (fields: Record<string, string>) =>
    ControlCommand.safeParse({ ...envelope, action: "conflict-order", ...fields }).success;
  assert.equal(parse({ identifier, verdict: "ours" }), true);
  assert.equal(parse({ identifier, verdict: "not-ours" }), true);
  assert.equal(parse({ identifier, verdict: "maybe" }), false);
  assert.equal(parse({ identifier: "paper-x", verdict: "ours" }), false);
  assert.equal(parse({ identifier, verdict: "ours", uuid: "x" }), false);
});
