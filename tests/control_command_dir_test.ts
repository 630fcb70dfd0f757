import assert from "node:assert/strict";
import { join } from "node:path";
import {
  controlDirLayout,
  ControlDirWatcher,
  enqueueControlCommand,
  queuedControlCommands,
  waitForControlAck,
} from "../lib/control/command_dir.ts";
import {
  applyControlCommand,
  type ControlCommand,
  newControlCommand,
} from "../lib/control/commands.ts";
import {
  entryHaltReason,
  haltEntries,
  pendingFlatten,
  tradingStateHistory,
  tradingStates,
} from "../lib/control/trading_state.ts";
import { setLogSink } from "../lib/log.ts";
import { parseControlArgs } from "../tools/control.ts";
import { dbTest } from "./_db.ts";

/** A temp control directory and the log lines written meanwhile; removed on dispose. */
async function tempControl() {
  const dataDir = await Deno.makeTempDir({ prefix: "upbot_control_" });
  const lines: string[] = [];
  const restoreSink = setLogSink((line) => lines.push(line));
  return {
    layout: controlDirLayout(dataDir),
    lines,
    async [Symbol.asyncDispose]() {
      restoreSink();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

dbTest("ControlDirWatcher.processInbox() applies a queued halt and acknowledges it", async (db) => {
  await using t = await tempControl();
  const command = newControlCommand({ action: "halt", scope: "KRW-BTC", reason: "notice" });
  await enqueueControlCommand(t.layout, command);
  const applied: ControlCommand[] = [];
  const watcher = new ControlDirWatcher({
    layout: t.layout,
    sql: db.sql,
    onApplied: (c) => applied.push(c),
  });
  assert.equal(await watcher.processInbox(), 1);
  assert.match((await entryHaltReason(db.sql, "KRW-BTC"))!, /halted by cli .+: notice$/);
  assert.equal(await entryHaltReason(db.sql, "KRW-ETH"), null);
  assert.deepEqual(applied.map((c) => c.id), [command.id]);
  assert.deepEqual(await queuedControlCommands(t.layout), []);
  const ack = await waitForControlAck(t.layout, command.id, { timeoutMs: 0 });
  assert.equal(ack?.ok, true);
  assert.equal(ack?.message, "New entries halted on KRW-BTC (exits go on): notice");
  assert.deepEqual(ack?.states.map((s) => [s.scope, s.halted, s.by]), [["KRW-BTC", true, "cli"]]);
  // The tool removes the acknowledgement it read.
  assert.deepEqual(await names(t.layout.acks), []);
  assert.ok(t.lines.some((l) => l.includes("New entries halted on KRW-BTC")), t.lines.join("\n"));
});

dbTest("ControlDirWatcher polls: a command written after start() is applied", async (db) => {
  await using t = await tempControl();
  const watcher = new ControlDirWatcher({ layout: t.layout, sql: db.sql, pollIntervalMs: 50 });
  watcher.start();
  try {
    const flatten = newControlCommand({ action: "flatten", reason: "going away" });
    await enqueueControlCommand(t.layout, flatten);
    const ack = await waitForControlAck(t.layout, flatten.id, { timeoutMs: 10_000 });
    assert.equal(ack?.ok, true);
    const pending = await pendingFlatten(db.sql);
    assert.equal(ack?.flatten_id, pending?.id);
    assert.equal(pending?.reason, "going away");
    assert.match((await entryHaltReason(db.sql, "KRW-ETH"))!, /halted globally by cli/);

    const resume = newControlCommand({ action: "resume", scope: "global" });
    await enqueueControlCommand(t.layout, resume);
    const resumed = await waitForControlAck(t.layout, resume.id, { timeoutMs: 10_000 });
    assert.match(
      resumed!.message,
      /^Entries resumed on every market; lifted the halt by cli at \S+: flatten: going away; the daily loss limit counts from now$/,
    );
    assert.equal(await entryHaltReason(db.sql, "KRW-ETH"), null);
  } finally {
    await watcher.stop();
  }
});

dbTest("ControlDirWatcher applies queued commands in the order they were written", async (db) => {
  await using t = await tempControl();
  const t0 = Date.now();
  // Written out of order on purpose: the file names carry the issue time.
  await enqueueControlCommand(
    t.layout,
    newControlCommand({ action: "resume", scope: "KRW-BTC" }, new Date(t0 + 1)),
  );
  await enqueueControlCommand(
    t.layout,
    newControlCommand({ action: "halt", scope: "KRW-BTC", reason: "r" }, new Date(t0)),
  );
  const watcher = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
  assert.equal(await watcher.processInbox(), 2);
  assert.equal(await entryHaltReason(db.sql, "KRW-BTC"), null);
  assert.deepEqual(
    (await tradingStateHistory(db.sql)).reverse().map((h) => h.action),
    ["halt", "resume"],
  );
});

dbTest("ControlDirWatcher moves malformed files aside, logs them and goes on", async (db) => {
  await using t = await tempControl();
  const watcher = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
  await watcher.processInbox(); // creates the directories
  await Deno.writeTextFile(join(t.layout.inbox, "000-garbage.json"), "{ not json");
  const badId = crypto.randomUUID();
  await Deno.writeTextFile(
    join(t.layout.inbox, "001-bad.json"),
    JSON.stringify({
      version: 1,
      id: badId,
      issued_at: new Date().toISOString(),
      action: "halt",
      scope: "btc",
      reason: "x",
    }),
  );
  await Deno.writeTextFile(join(t.layout.inbox, "002-wrong.json"), JSON.stringify([1, 2]));
  const good = newControlCommand({ action: "halt", scope: "global", reason: "after the bad" });
  await enqueueControlCommand(t.layout, good);

  assert.equal(await watcher.processInbox(), 1);
  assert.deepEqual(await names(t.layout.rejected), [
    "000-garbage.json",
    "001-bad.json",
    "002-wrong.json",
  ]);
  assert.deepEqual(await queuedControlCommands(t.layout), []);
  const errors = t.lines.filter((l) => l.includes("control file is not a valid command"));
  assert.equal(errors.length, 3, t.lines.join("\n"));
  assert.ok(errors.some((l) => l.includes("not JSON")));
  assert.ok(errors.some((l) => l.includes("scope")));
  // The refused command's tool learns why.
  const refused = await waitForControlAck(t.layout, badId, { timeoutMs: 0 });
  assert.equal(refused?.ok, false);
  assert.match(refused!.message, /^command refused: scope: /);
  // Nothing of the bad files reached the store; the good command did.
  assert.deepEqual((await tradingStates(db.sql)).map((s) => [s.scope, s.reason]), [
    ["global", "after the bad"],
  ]);
});

dbTest("ControlDirWatcher never applies an acknowledged command twice", async (db) => {
  await using t = await tempControl();
  const command = newControlCommand({ action: "flatten", reason: "once" });
  await enqueueControlCommand(t.layout, command);
  const watcher = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
  assert.equal(await watcher.processInbox(), 1);
  // As after a crash between the acknowledgement and the delete: the file is back.
  await enqueueControlCommand(t.layout, command);
  assert.equal(await watcher.processInbox(), 0);
  assert.deepEqual(await queuedControlCommands(t.layout), []);
  const [row] = await db.sql`select count(*)::int as n from flatten_requests`;
  assert.equal(row?.n, 1);
});

/** Makes every rename into `dir` fail as on a full disk until disposed. */
function failRenamesInto(dir: string) {
  const rename = Deno.rename;
  Deno.rename = (from, to) =>
    String(to).startsWith(dir)
      ? Promise.reject(new Error("No space left on device (os error 28)"))
      : rename(from, to);
  return {
    [Symbol.dispose]() {
      Deno.rename = rename;
    },
  };
}

dbTest(
  "ControlDirWatcher applies a command once when its acknowledgement cannot be written",
  async (db) => {
    await using t = await tempControl();
    const resume = newControlCommand({ action: "resume", scope: "global" });
    await enqueueControlCommand(t.layout, resume);
    const watcher = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
    // As the poll loop does: a pass that fails is logged and the next one comes.
    const pass = () => watcher.processInbox().catch((err: Error) => err);
    let first;
    {
      using _full = failRenamesInto(t.layout.acks);
      first = await pass();
      // A safety halt stored after the resume was applied: later polls must not lift it.
      await haltEntries(db.sql, { scope: "global", reason: "identifier conflict", by: "executor" });
      await pass();
      await pass();
      assert.match(
        (await entryHaltReason(db.sql, "KRW-BTC"))!,
        /by executor .+identifier conflict/,
      );
      assert.deepEqual(
        (await tradingStateHistory(db.sql)).reverse().map((h) => [h.action, h.by]),
        [["resume", "cli"], ["halt", "executor"]],
      );
      assert.equal(first, 1);
      assert.equal(await pass(), 0);
      assert.equal((await queuedControlCommands(t.layout)).length, 1, "kept to acknowledge");
      const pending = t.lines.filter((l) => l.includes("its acknowledgement could not be written"));
      assert.equal(pending.length, 1, t.lines.join("\n"));
      assert.equal(t.lines.filter((l) => l.includes("Entries resumed")).length, 1);
    }
    // Once the acknowledgement can be written, the tool gets the one of the resume it applied.
    assert.equal(await pass(), 0);
    assert.deepEqual(await queuedControlCommands(t.layout), []);
    const ack = await waitForControlAck(t.layout, resume.id, { timeoutMs: 0 });
    assert.equal(ack?.ok, true);
    assert.match(ack!.message, /^Entries resumed on every market/);
    assert.match((await entryHaltReason(db.sql, "KRW-BTC"))!, /by executor/);
    assert.ok(t.lines.some((l) => l.includes("acknowledged at last")), t.lines.join("\n"));
  },
);

dbTest(
  "ControlDirWatcher never applies again a command whose acknowledgement was already read",
  async (db) => {
    await using t = await tempControl();
    const command = newControlCommand({ action: "flatten", reason: "once" });
    await enqueueControlCommand(t.layout, command);
    const watcher = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
    assert.equal(await watcher.processInbox(), 1);
    const first = await waitForControlAck(t.layout, command.id, { timeoutMs: 0 });
    // As after a crash after the commit, before the delete, the tool having read the acknowledgement.
    await enqueueControlCommand(t.layout, command);
    const restarted = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
    assert.equal(await restarted.processInbox(), 0);
    assert.deepEqual(await queuedControlCommands(t.layout), []);
    const [row] = await db.sql`select count(*)::int as n from flatten_requests`;
    assert.equal(row?.n, 1);
    // Acknowledged again with what was stored when it was applied.
    const again = await waitForControlAck(t.layout, command.id, { timeoutMs: 0 });
    assert.deepEqual(again, first);
    assert.ok(t.lines.some((l) => l.includes("already applied; acknowledged again")));
  },
);

dbTest(
  "ControlDirWatcher refuses a resume while a flatten is pending, acknowledges why and goes on",
  async (db) => {
    await using t = await tempControl();
    // A live position upbot bought: the flatten's closer has it to sell.
    await db.sql`
      insert into upbit_order_attempts (symbol, action, mode, side, ord_type, identifier, state,
        executed_volume, paid_fee, avg_price)
      values ('KRW-BTC', 'ENTER_LONG', 'live', 'bid', 'price', 'command-dir-test-1', 'filled',
        '0.001', '50', '100000000')`;
    const t0 = Date.now();
    const flatten = newControlCommand({ action: "flatten", reason: "away" }, new Date(t0));
    const resume = newControlCommand({ action: "resume", scope: "global" }, new Date(t0 + 1));
    const halt = newControlCommand(
      { action: "halt", scope: "KRW-ETH", reason: "after" },
      new Date(t0 + 2),
    );
    for (const c of [flatten, resume, halt]) await enqueueControlCommand(t.layout, c);
    const watcher = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
    assert.equal(await watcher.processInbox(), 2, "the flatten and the halt");
    assert.deepEqual(await queuedControlCommands(t.layout), [], "the refused resume is removed");
    const ack = await waitForControlAck(t.layout, resume.id, { timeoutMs: 0 });
    assert.equal(ack?.ok, false);
    assert.match(
      ack!.message,
      /^resume refused: flatten #\d+ \(requested by cli at \S+: away\) is still pending, closing KRW-BTC; it completes once every live position is closed, then entries can be resumed$/,
    );
    assert.match((await entryHaltReason(db.sql, "KRW-SOL"))!, /globally by cli .+flatten: away/);
    assert.notEqual(await pendingFlatten(db.sql), null);
    assert.ok(t.lines.some((l) => l.includes("control command refused")), t.lines.join("\n"));
    // A copy of the refused command is not tried again later.
    await db.sql`delete from upbit_order_attempts`;
    await enqueueControlCommand(t.layout, resume);
    assert.equal(await watcher.processInbox(), 0);
    assert.match((await entryHaltReason(db.sql, "KRW-SOL"))!, /globally by cli/);
  },
);

dbTest("ControlDirWatcher keeps a command the database refuses and retries it", async (db) => {
  await using t = await tempControl();
  const first = newControlCommand({ action: "halt", scope: "KRW-BTC", reason: "first" });
  const second = newControlCommand(
    { action: "resume", scope: "KRW-BTC" },
    new Date(Date.parse(first.issued_at) + 1),
  );
  await enqueueControlCommand(t.layout, first);
  await enqueueControlCommand(t.layout, second);
  const watcher = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
  await db.sql`alter table trading_state rename to trading_state_away`;
  assert.equal(await watcher.processInbox(), 0);
  assert.equal(await watcher.processInbox(), 0);
  assert.equal((await queuedControlCommands(t.layout)).length, 2, "both stay queued");
  const failures = t.lines.filter((l) => l.includes("could not be applied"));
  assert.equal(failures.length, 1, "logged once, not every poll");
  await db.sql`alter table trading_state_away rename to trading_state`;
  assert.equal(await watcher.processInbox(), 2);
  assert.deepEqual(
    (await tradingStateHistory(db.sql)).reverse().map((h) => h.action),
    ["halt", "resume"],
  );
});

dbTest("ControlDirWatcher.claim() refuses a second watcher of one directory", async (db) => {
  await using t = await tempControl();
  const first = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
  const second = new ControlDirWatcher({ layout: t.layout, sql: db.sql });
  await first.claim();
  try {
    await assert.rejects(second.claim(), {
      name: "ControlDirInUseError",
      message:
        `the control directory ${t.layout.root} is in use by another upbot process; give each upbot its own DATA_DIR`,
    });
  } finally {
    await first.stop();
  }
  // Released on stop.
  await second.claim();
  await second.stop();
});

dbTest("applyControlCommand() says which halts still stop entries after a resume", async (db) => {
  await applyControlCommand(db.sql, { action: "halt", scope: "KRW-BTC", reason: "m" }, "cli");
  await applyControlCommand(db.sql, { action: "halt", scope: "global", reason: "g" }, "cli");
  const market = await applyControlCommand(db.sql, { action: "resume", scope: "KRW-BTC" }, "cli");
  assert.match(
    market.message,
    /^Entries resumed on KRW-BTC; lifted the halt by cli at \S+: m; entries stay halted on every market by the global halt \(g\): resume it without --market$/,
  );
  await applyControlCommand(db.sql, { action: "halt", scope: "KRW-ETH", reason: "e" }, "cli");
  const global = await applyControlCommand(db.sql, { action: "resume", scope: "global" }, "cli");
  assert.match(
    global.message,
    /^Entries resumed on every market; lifted the halt by cli at \S+: g; the daily loss limit counts from now; still halted on their own: KRW-ETH \(resume each with --market\)$/,
  );
  const clear = await applyControlCommand(db.sql, { action: "resume", scope: "KRW-ETH" }, "cli");
  assert.match(clear.message, /^Entries resumed on KRW-ETH; lifted the halt by cli at \S+: e$/);
  assert.ok(clear.states.every((s) => !s.halted));
  // Nothing halted: nothing lifted.
  const again = await applyControlCommand(db.sql, { action: "resume", scope: "KRW-ETH" }, "cli");
  assert.equal(again.message, "Entries resumed on KRW-ETH");
});

dbTest(
  "applyControlCommand() names every halt a resume lifts, an earlier one under a newer reason too",
  async (db) => {
    // The executor's safety halt, then the operator's own over it: the row keeps only the newest.
    await haltEntries(db.sql, {
      scope: "global",
      reason: "identifier conflict on x",
      by: "executor",
    });
    await applyControlCommand(db.sql, { action: "halt", scope: "global", reason: "sleep" }, "cli");
    const resumed = await applyControlCommand(db.sql, { action: "resume", scope: "global" }, "cli");
    assert.match(
      resumed.message,
      /^Entries resumed on every market; lifted 2 halts by executor at \S+: identifier conflict on x; by cli at \S+: sleep; the daily loss limit counts from now$/,
    );
  },
);

Deno.test("parseControlArgs() reads halt, resume and flatten", () => {
  assert.deepEqual(parseControlArgs(["halt", "--reason", "why", "--market", "krw-btc"]), {
    action: "halt",
    scope: "KRW-BTC",
    reason: "why",
  });
  assert.deepEqual(parseControlArgs(["halt", "--reason=all"]), {
    action: "halt",
    scope: "global",
    reason: "all",
  });
  assert.deepEqual(parseControlArgs(["resume"]), { action: "resume", scope: "global" });
  assert.deepEqual(parseControlArgs(["resume", "--market", "KRW-ETH"]), {
    action: "resume",
    scope: "KRW-ETH",
  });
  assert.deepEqual(parseControlArgs(["flatten", "--reason", "bye"]), {
    action: "flatten",
    reason: "bye",
  });
});

Deno.test("parseControlArgs() refuses what it cannot do safely", () => {
  assert.throws(() => parseControlArgs(["halt"]), {
    message: 'halt needs --reason "why" (it is stored with who and when)',
  });
  assert.throws(() => parseControlArgs(["halt", "--reason", " "]), {
    message: 'halt needs --reason "why" (it is stored with who and when)',
  });
  assert.throws(() => parseControlArgs(["flatten", "--reason", "x", "--market", "KRW-BTC"]), {
    message: "flatten closes every position: it takes no --market",
  });
  assert.throws(() => parseControlArgs(["resume", "--reason", "x"]), {
    message: "resume takes no --reason",
  });
  assert.throws(() => parseControlArgs(["halt", "--reason", "x", "--market", "BTC"]), {
    message: 'trading scope "BTC" is neither "global" nor a market code such as KRW-BTC',
  });
  assert.throws(() => parseControlArgs(["stop"]), { message: 'unknown control command "stop"' });
  assert.throws(() => parseControlArgs(["halt", "--reason", "x", "--force"]), /--force/);
});

Deno.test("the control directory is made owner-only (whoever writes to its inbox controls trading)", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "upbot_ctl_mode_" });
  try {
    const layout = controlDirLayout(join(dataDir, "data"));
    await enqueueControlCommand(
      layout,
      newControlCommand({ action: "halt", scope: "global", reason: "mode test" }),
    );
    for (const dir of [layout.root, layout.inbox, layout.acks, layout.rejected]) {
      assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700, dir);
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
