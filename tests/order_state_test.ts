import assert from "node:assert/strict";
import { identifierFor } from "../lib/execution/executor.ts";
import {
  IllegalTransitionError,
  ORDER_STATES,
  stateOfExchangeOrder,
  statusOf,
  TERMINAL_STATES,
  transition,
} from "../lib/execution/order_state.ts";
import { migrate, readMigrations } from "../lib/db/migrate.ts";
import {
  attemptByIdentifier,
  insertAttempt,
  installationId,
  transitionAttempt,
} from "../lib/store/order_attempts.ts";
import { dbTest, openTestDatabase } from "./_db.ts";

Deno.test("transition() allows the table's moves and returns the new state", () => {
  assert.equal(transition("pending", "sent"), "sent");
  assert.equal(transition("sent", "open"), "open");
  assert.equal(transition("sent", "unknown"), "unknown");
  // A row left `sent` by a crash, resolved by identifier to an order that is not ours.
  assert.equal(transition("sent", "conflict"), "conflict");
  assert.equal(transition("unknown", "pending"), "pending");
  assert.equal(transition("open", "partially_filled"), "partially_filled");
  assert.equal(transition("partially_filled", "prevented"), "prevented");
  assert.equal(transition("open", "unknown"), "unknown");
});

Deno.test("transition() throws on illegal moves", () => {
  assert.throws(() => transition("pending", "filled"), IllegalTransitionError);
  assert.throws(() => transition("sent", "filled"), IllegalTransitionError);
  assert.throws(() => transition("open", "pending"), IllegalTransitionError);
  assert.throws(() => transition("unknown", "sent"), IllegalTransitionError);
  assert.throws(
    () => transition("error", "pending"),
    {
      name: "IllegalTransitionError",
      message: "Cannot move an order attempt from error to pending",
    },
  );
});

Deno.test("transition(): every terminal state is terminal, into every state", () => {
  assert.deepEqual(
    [...TERMINAL_STATES].sort(),
    [
      "cancelled",
      "conflict",
      "failed",
      "filled",
      "logged",
      "prevented",
      "rejected",
      "skipped",
      "test_ok",
    ],
  );
  for (const from of TERMINAL_STATES) {
    for (const to of ORDER_STATES) {
      assert.throws(() => transition(from, to), IllegalTransitionError, `${from} -> ${to}`);
    }
  }
});

Deno.test("statusOf() keeps the seed's statuses readable", () => {
  assert.deepEqual(
    ORDER_STATES.map((s) => [s, statusOf(s)]),
    [
      ["pending", "pending"],
      ["sent", "pending"],
      ["unknown", "unknown"],
      ["open", "submitted"],
      ["partially_filled", "submitted"],
      ["filled", "done"],
      ["cancelled", "done"],
      ["prevented", "done"],
      ["rejected", "error"],
      ["failed", "error"],
      ["conflict", "error"],
      ["skipped", "skipped"],
      ["logged", "logged"],
      ["test_ok", "test_ok"],
    ],
  );
});

Deno.test("stateOfExchangeOrder(): Upbit's states, and a cancel self-trade prevention took part of is prevented", () => {
  const of = (state: string, executed: string, prevented?: string | null) =>
    stateOfExchangeOrder({ state, executed_volume: executed, prevented_volume: prevented });
  assert.equal(of("wait", "0", "0"), "open");
  assert.equal(of("watch", "0.1", "0"), "partially_filled");
  assert.equal(of("done", "0.1", "0"), "filled");
  assert.equal(of("cancel", "0.1", "0"), "cancelled");
  assert.equal(
    of("cancel", "0", undefined),
    "cancelled",
    "older answers carry no prevented_volume",
  );
  assert.equal(of("cancel", "0", null), "cancelled");
  // §4.5 lists no `prevented` REST state [?]: a `cancel` with prevented_volume is one.
  assert.equal(of("cancel", "0", "0.001"), "prevented");
  assert.equal(of("cancel", "0.002", "0.001"), "prevented");
  assert.equal(of("prevented", "0", "0.001"), "prevented");
  assert.throws(() => of("trade", "0"), /does not know: trade/);
});

Deno.test("identifierFor() builds paper-{inst}-{id}-{action}[-r{n}] within 64 characters", () => {
  assert.equal(identifierFor("abcdefgh", 12, "ENTER_LONG"), "paper-abcdefgh-12-ENTER_LONG");
  assert.equal(identifierFor("abcdefgh", 12, "EXIT_LONG", 2), "paper-abcdefgh-12-EXIT_LONG-r2");
  assert.ok(identifierFor("abcdefgh", Number.MAX_SAFE_INTEGER, "ENTER_LONG", 999).length <= 64);
  assert.throws(() => identifierFor("x".repeat(50), 1, "ENTER_LONG"), /longer than 64/);
});

async function newAttempt(sql: Parameters<typeof installationId>[0], identifier: string) {
  const [p] = await sql`insert into paper_trades (symbol, action, policy_profile, entry_ts,
    entry_price, qty, fee) values ('KRW-BTC', 'ENTER_LONG', 'default', now(), '1', '1', '0')
    returning id`;
  return (await insertAttempt(sql, {
    symbol: "KRW-BTC",
    action: "ENTER_LONG",
    mode: "live",
    side: "bid",
    ord_type: "price",
    price: "10000",
    volume: null,
    paper_trade_id: Number(p!.id),
    identifier,
    state: "pending",
    request_json: { market: "KRW-BTC" },
  }))!;
}

dbTest(
  "transitionAttempt(): status follows state; a second writer from the same state loses",
  async ({ sql }) => {
    const a = await newAttempt(sql, "paper-test-1-ENTER_LONG");
    assert.equal(a.status, "pending");
    const sent = await transitionAttempt(sql, a.id, "pending", "sent");
    assert.equal(sent?.state, "sent");
    const open = await transitionAttempt(sql, a.id, "sent", "open", { uuid: "u-1" });
    assert.deepEqual([open?.state, open?.status, open?.uuid], ["open", "submitted", "u-1"]);
    // A writer still holding the `sent` view cannot move it again.
    assert.equal(await transitionAttempt(sql, a.id, "sent", "unknown"), null);
    await assert.rejects(
      () => transitionAttempt(sql, a.id, "open", "pending"),
      IllegalTransitionError,
    );
    const rejected = await transitionAttempt(sql, a.id, "open", "filled", { final_state: "done" });
    assert.equal(rejected?.status, "done");
  },
);

dbTest("insertAttempt(): only initial states; one attempt per paper trade", async ({ sql }) => {
  const a = await newAttempt(sql, "paper-test-2-ENTER_LONG");
  await assert.rejects(
    () => insertAttempt(sql, { ...a, ord_type: "price", request_json: {}, state: "open" }),
    /Cannot create an order attempt in state open/,
  );
  assert.equal(
    await insertAttempt(sql, {
      ...a,
      ord_type: "price",
      identifier: "another",
      request_json: {},
      state: "pending",
    }),
    null,
    "a paper trade has one attempt",
  );
});

dbTest(
  "installation id: 8 base32 characters made at the first migration, kept after",
  async ({ sql }) => {
    const id = await installationId(sql);
    assert.match(id, /^[a-z2-7]{8}$/);
    await migrate(sql);
    assert.equal(await installationId(sql), id, "migrating again keeps it");
    await assert.rejects(
      () => sql`insert into installation (id) values ('zzzzzzzz')`,
      /duplicate|unique/i,
    );
  },
);

Deno.test("installation ids differ between two fresh databases", async () => {
  const one = await openTestDatabase("pglite", { migrated: true });
  const two = await openTestDatabase("pglite", { migrated: true });
  try {
    assert.notEqual(await installationId(one.sql), await installationId(two.sql));
  } finally {
    await one.close();
    await two.close();
  }
});

dbTest(
  "migration 002 converts seed rows: states, reasons, identifiers kept and resolvable",
  async ({ sql }) => {
    const files = await readMigrations();
    await migrate(sql, files.filter((f) => f.version === 1));
    const [p] = await sql`insert into paper_trades (symbol, action, policy_profile, entry_ts,
    entry_price, qty, fee) values ('KRW-BTC', 'ENTER_LONG', 'default', now(), '1', '1', '0')
    returning id`;
    const rows: [string, string, string | null, string | null, string | null][] = [
      ["paper-1-ENTER_LONG", "submitted", null, null, "u1"],
      ["paper-2-ENTER_LONG", "done", "cancel", null, "u2"],
      ["paper-3-ENTER_LONG", "error", null, "insufficient_funds_bid: x", null],
      ["paper-4-ENTER_LONG", "error", null, "not found after 24 polls", "u4"],
      ["paper-5-ENTER_LONG", "unknown", null, "duplicated_identifier", null],
      ["paper-6-ENTER_LONG", "skipped", null, "stale: paper trade is 90s old", null],
      ["paper-7-ENTER_LONG", "submitted", null, "cancel requested after 24 polls", "u7"],
    ];
    for (const [identifier, status, final_state, error_msg, uuid] of rows) {
      await sql`insert into upbit_order_attempts (symbol, action, mode, side, ord_type, status,
      identifier, paper_trade_id, final_state, error_msg, uuid)
      values ('KRW-BTC', 'ENTER_LONG', 'live', 'bid', 'price', ${status}, ${identifier},
        ${p!.id}, ${final_state}, ${error_msg}, ${uuid})`;
    }
    await migrate(sql, files);
    const got = await sql`select identifier, state, status, reason,
    cancel_requested_at is not null as cancel_requested
    from upbit_order_attempts order by id`;
    assert.deepEqual(
      got.map((r) => [r.identifier, r.state, r.status, r.reason, r.cancel_requested]),
      [
        ["paper-1-ENTER_LONG", "open", "submitted", null, false],
        ["paper-2-ENTER_LONG", "cancelled", "done", null, false],
        ["paper-3-ENTER_LONG", "failed", "error", "migrated_error", false],
        ["paper-4-ENTER_LONG", "unknown", "unknown", "order_not_found", false],
        ["paper-5-ENTER_LONG", "unknown", "unknown", "duplicated_identifier", false],
        ["paper-6-ENTER_LONG", "skipped", "skipped", "stale_signal", false],
        ["paper-7-ENTER_LONG", "open", "submitted", null, true],
      ],
    );
    // The old identifier still resolves to its attempt, through the identifier history too.
    assert.equal((await attemptByIdentifier(sql, "paper-3-ENTER_LONG"))?.state, "failed");
    const [h] = await sql`select count(*)::int as n from upbit_order_identifiers`;
    assert.equal(h!.n, rows.length);
  },
  { migrated: false },
);

dbTest(
  "status is derived from state on every write; a seed-style insert gets its state",
  async ({ sql }) => {
    const [p] = await sql`insert into paper_trades (symbol, action, policy_profile, entry_ts,
    entry_price, qty, fee) values ('KRW-BTC', 'ENTER_LONG', 'default', now(), '1', '1', '0')
    returning id`;
    const [row] = await sql`insert into upbit_order_attempts (symbol, action, mode, side, ord_type,
    status, identifier, paper_trade_id)
    values ('KRW-BTC', 'ENTER_LONG', 'live', 'bid', 'price', 'submitted', 'seed-style-1', ${p!.id})
    returning id, state, status`;
    assert.deepEqual([row!.state, row!.status], ["open", "submitted"]);
    // Writing the status alone never moves an attempt: it is derived again from the state.
    await sql`update upbit_order_attempts set status = 'done' where id = ${row!.id}`;
    const [after] = await sql`select state, status from upbit_order_attempts where id = ${row!.id}`;
    assert.deepEqual([after!.state, after!.status], ["open", "submitted"]);
  },
);
