/**
 * @module Worker faults: throws, hangs, silent exits and out-of-memory-like failures injected into
 * every pipeline actor, repeatedly, while the pipeline runs in shadow mode on the simulator. Each
 * actor is restarted per its policy; afterwards paper trades are contiguous per market, each has
 * exactly one attempt, and bars are neither duplicated nor missing. A critical actor in a crash
 * loop fails for good and halts trading: no new entry is attempted after the halt.
 *
 * Faults are injected with the test-only `Supervisor.injectFault` (a `fault.inject` control
 * message of the runtime), honoured only by a supervisor created with `faultInjection: true` (see
 * lib/actors/protocol.ts `FaultInjectMessage`).
 */
import { entryHaltReason } from "../lib/control/trading_state.ts";
import assert from "node:assert/strict";
import type { UpbotMessage } from "../lib/pipeline/messages.ts";
import { UpbotSupervisor, type UpbotSupervisorEvent } from "../lib/pipeline/supervisor.ts";
import { setLogSink } from "../lib/log.ts";
import { DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY } from "../sim/mod.ts";
import { testBackends } from "./_db.ts";
import {
  assertBarsContiguous,
  assertOneAttemptPerPaperTrade,
  assertPaperTradesContiguous,
  FAST_SUPERVISOR,
  startDisposableSimulator,
  startUpbotRig,
} from "./_fault_rig.ts";
import { parseConfig } from "../lib/config.ts";
import { startUpbot } from "../lib/upbot.ts";

const FAULTS = ["throw", "hang", "exit", "oom"] as const;
type Fault = typeof FAULTS[number];
/**
 * The faults of the recovery drill. `hang` is drilled separately: a hung worker's thread keeps
 * spinning after it is terminated (Deno), up to the fault's 20 s, so five at once load the
 * machine for that long (see the hang tests below).
 */
const DRILL_FAULTS = (Deno.env.get("WORKER_FAULTS") ?? "throw,exit,oom").split(",") as Fault[];
const ACTORS = ["feed", "evaluator", "executor", "order_poller", "account"];
/** `EVAL_HORIZON_SEC` of the pipeline drills: the test profile's 30 s hold, shortened. */
const SHORT_HORIZON_SEC = 3;

/** The highest incarnation `actor` has started. */
function incarnation(events: UpbotSupervisorEvent[], actor: string): number {
  let n = 0;
  for (const e of events) {
    if (e.type === "actor.started" && e.actor === actor) n = Math.max(n, e.incarnation);
  }
  return n;
}

async function waitFor(what: () => string, check: () => boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("fault.inject: each fault ends the incarnation and the actor is restarted; ignored unless enabled", async () => {
  const restoreSink = setLogSink(() => {});
  const echo = new URL("./fixtures/actors/echo.ts", import.meta.url);
  const make = (
    faultInjection: boolean,
    events: UpbotSupervisorEvent[],
    onMessage?: (message: UpbotMessage) => void,
  ) =>
    new UpbotSupervisor({
      actors: [{ name: "echo", module: echo, config: {} }],
      log: { level: "error", format: "json" },
      heartbeatIntervalMs: 50,
      heartbeatTimeoutMs: 1_000,
      restartMinDelayMs: 20,
      restartMaxDelayMs: 100,
      restartJitter: 0,
      maxRestarts: 100,
      statusLogIntervalMs: 0,
      faultInjection,
      onEvent: (e) => events.push(e),
      onMessage,
    });
  try {
    const events: UpbotSupervisorEvent[] = [];
    const supervisor = make(true, events);
    await supervisor.start();
    try {
      for (const fault of FAULTS) {
        const before = incarnation(events, "echo");
        supervisor.injectFault("echo", fault);
        await waitFor(
          () => `${fault}: restart after incarnation ${before}; ${JSON.stringify(events)}`,
          () => incarnation(events, "echo") > before,
        );
        const crash = events.findLast((e) => e.type === "actor.crashed");
        assert.ok(crash, `${fault} is a crash`);
      }
      const errors = events.filter((e) => e.type === "actor.crashed").map((e) =>
        e.type === "actor.crashed" ? e.error : ""
      );
      assert.equal(errors.length, 4);
      assert.match(errors[0]!, /injected fault: handler threw/);
      assert.match(errors[3]!, /injected fault: out of memory/);
    } finally {
      await supervisor.stop("test end");
    }

    const quiet: UpbotSupervisorEvent[] = [];
    const echoed: string[] = [];
    const production = make(false, quiet, (message) => echoed.push(message.type));
    await production.start();
    try {
      for (const fault of FAULTS) production.injectFault("echo", fault);
      // The mailbox is in order: the echo of this wake comes after the faults were dropped.
      production.send("echo", { type: "wake", topic: "paper_trades" });
      await waitFor(() => JSON.stringify(production.status()), () => echoed.includes("wake"));
      const status = production.status()[0]!;
      assert.equal(status.state, "running");
      assert.equal(status.restarts, 0);
      assert.deepEqual(quiet.filter((e) => e.type === "actor.crashed"), []);
    } finally {
      await production.stop("test end");
    }
  } finally {
    restoreSink();
  }
});

const simKeys = { UPBIT_ACCESS_KEY: DEFAULT_ACCESS_KEY, UPBIT_SECRET_KEY: DEFAULT_SECRET_KEY };

for (const backend of testBackends()) {
  Deno.test(
    `feed restart: running before its start-up backfill is in, which readiness waits for [${backend}]`,
    async () => {
      const markets = ["KRW-BTC", "KRW-ETH"];
      await using sim = await startDisposableSimulator({ seed: 22, markets, rate: 50 });
      await using rig = await startUpbotRig({
        backend,
        sim,
        markets,
        supervisor: {
          faultInjection: true,
          heartbeatIntervalMs: 100,
          // The exit below is noticed by the missing pongs: after 2 s, not the default 5 s.
          heartbeatTimeoutMs: 2_000,
          // A start timeout shorter than the backfill below: the backfill is not part of the start.
          startTimeoutMs: 3_000,
        },
      });
      const readyz = async () => {
        const res = await fetch(`${rig.upbot.httpUrl}/readyz`);
        return { status: res.status, body: await res.json() as { problems: string[] } };
      };
      await rig.until("ready", async () => (await readyz()).status === 200);
      const feed = () => rig.upbot.supervisor.status().find((a) => a.name === "feed")!;
      // Every REST answer now takes 2 s: the restarted feed's backfill (a page per market, the
      // last final bars are seconds old) takes at least 4 s, longer than the start timeout.
      sim.setFaults({ latency_ms: 2_000 });
      const before = incarnation(rig.events, "feed");
      rig.upbot.supervisor.injectFault("feed", "exit");
      await rig.until("the feed restarted", () => incarnation(rig.events, "feed") > before);
      // Started (ready) while its backfill still waits for the exchange; not ready for traffic.
      assert.equal(feed().state, "running");
      const during = await readyz();
      assert.equal(during.status, 503);
      assert.ok(
        during.body.problems.includes("feed has not finished its start-up backfill"),
        JSON.stringify(during.body),
      );
      sim.setFaults({ latency_ms: 0 });
      await rig.until("the backfill in", () => feed().metrics.backfillDone === true, 30_000);
      assert.ok(Number(feed().metrics.startBackfilled) > 0, JSON.stringify(feed().metrics));
      await rig.until("ready again", async () => (await readyz()).status === 200, 30_000);
      assert.equal(feed().state, "running");
      const timedOut = rig.events.filter((e) =>
        e.type === "actor.crashed" && e.error.includes("no ready within")
      );
      assert.deepEqual(timedOut, []);
    },
  );

  Deno.test(
    `worker faults: a hung actor's database sessions are ended at once and an actor_hung alarm raised [${backend}]`,
    async () => {
      const markets = ["KRW-BTC"];
      await using sim = await startDisposableSimulator({ seed: 24, markets, rate: 50 });
      await using rig = await startUpbotRig({
        backend,
        sim,
        markets,
        supervisor: { faultInjection: true, heartbeatIntervalMs: 100, heartbeatTimeoutMs: 2_000 },
      });
      const sessions = async (incarnationNo: number) =>
        (await rig.sql<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database()
            and application_name like ${`upbot-evaluator/%.${incarnationNo}/%`}`)[0]!.n;
      const before = incarnation(rig.events, "evaluator");
      if (backend === "postgres") {
        assert.ok(await sessions(before) >= 1, "the evaluator is connected");
      }
      rig.upbot.supervisor.injectFault("evaluator", "hang");
      await rig.until(
        "the evaluator restarted",
        () => incarnation(rig.events, "evaluator") > before,
      );
      // Its worker still spins (the fault gives up after 20 s) with its sockets open: upbot ends
      // its sessions itself, within the 10 s allowed here.
      const ended = () =>
        rig.lines.map((l) => JSON.parse(l) as { msg: string; name?: string; ended?: number })
          .find((l) =>
            l.msg === "database sessions of a terminated actor ended" && l.name === "evaluator"
          );
      await rig.until("the hung incarnation's sessions ended", () => ended() !== undefined, 10_000);
      assert.ok(ended()!.ended! >= 1, JSON.stringify(ended()));
      if (backend === "postgres") {
        assert.equal(await sessions(before), 0, "none of the hung incarnation's sessions is left");
        const now = incarnation(rig.events, "evaluator");
        await rig.until("the new incarnation connected", async () => await sessions(now) >= 1);
      }
      const hungAlarm = async (sql = rig.sql) =>
        (await sql<{ details: { actors: string[]; process: string } }[]>`
          select details from alarms where code = 'actor_hung' and cleared_at is null`)[0];
      const alarm = await hungAlarm();
      assert.ok(alarm?.details.actors.includes("evaluator"), JSON.stringify(alarm));
      assert.equal(
        rig.upbot.supervisor.status().find((a) => a.name === "evaluator")!.state,
        "running",
      );
      // The alarm lasts while the process it was raised in runs, and ends with it.
      const config = parseConfig({
        HTTP_PORT: "0",
        LOG_FORMAT: "json",
        MARKETS: markets.join(","),
        UPBIT_REST_URL: sim.restUrl,
        UPBIT_WS_URL: sim.wsUrl,
        ...rig.dbEnv,
      });
      const startAnother = () =>
        startUpbot(config, {
          supervisor: { ...FAST_SUPERVISOR, log: { level: "error", format: "json" } },
        });
      if (backend === "postgres") {
        // A second upbot on the database (a standby: the first holds the lease) keeps it.
        const standby = await startAnother();
        try {
          assert.deepEqual(await hungAlarm(standby.sql), alarm);
        } finally {
          await standby.stop();
        }
      }
      await rig.upbot.stop();
      const next = await startAnother();
      try {
        assert.equal(await hungAlarm(next.sql), undefined);
      } finally {
        await next.stop();
      }
    },
  );

  Deno.test(
    `worker faults: every actor survives throws, exits and OOM, twice; nothing lost or doubled [${backend}]`,
    async () => {
      const markets = ["KRW-BTC", "KRW-ETH"];
      await using sim = await startDisposableSimulator({ seed: 21, markets, rate: 200 });
      await using rig = await startUpbotRig({
        backend,
        sim,
        markets,
        env: {
          ...simKeys,
          PAPER_POLICY_PROFILE: "test",
          ACCOUNT_POLL_INTERVAL_SEC: "1",
          // A paper round trip within seconds (the test profile holds up to 30 s): the trades
          // after the faults come sooner.
          EVAL_HORIZON_SEC: String(SHORT_HORIZON_SEC),
        },
        supervisor: {
          faultInjection: true,
          // An exit is noticed by the missing pongs: within a second.
          heartbeatIntervalMs: 100,
          heartbeatTimeoutMs: 1_000,
          // Short restart delays: thirty restarts, five of them one after another (oom), each
          // waited out in real time.
          restartMinDelayMs: 20,
          restartMaxDelayMs: 100,
          maxRestarts: 100,
        },
      });
      await rig.until("a paper trade", async () => await rig.count("paper_trades") > 0);
      const inject = async (actor: string, fault: Fault) => {
        const before = incarnation(rig.events, actor);
        rig.upbot.supervisor.injectFault(actor, fault);
        await rig.until(
          `${actor} restarted after ${fault}`,
          () => incarnation(rig.events, actor) > before,
          90_000,
        );
      };
      for (let round = 0; round < 2; round++) {
        for (const fault of DRILL_FAULTS) {
          if (fault === "oom") {
            // One at a time: each holds up to 128 MB before it fails.
            for (const actor of ACTORS) await inject(actor, fault);
          } else {
            await Promise.all(ACTORS.map((actor) => inject(actor, fault)));
          }
        }
      }
      const status = rig.upbot.supervisor.status();
      for (const actor of ACTORS) {
        const s = status.find((a) => a.name === actor)!;
        assert.ok(s.restarts >= 2 * DRILL_FAULTS.length, `${actor} restarted ${s.restarts} times`);
      }
      // The pipeline goes on: new paper round trips after the last fault, all executed.
      let papersBefore = 0;
      await rig.until("the paper trades counted", async () => {
        papersBefore = await rig.count("paper_trades");
        return true;
      });
      await rig.until(
        "two more paper trades after the faults",
        async () => await rig.count("paper_trades") >= papersBefore + 2,
        120_000,
      );
      await rig.until(
        "every actor running",
        () => rig.upbot.supervisor.status().every((a) => a.state === "running"),
      );
      const [last] = await rig.sql`select max(id)::int as id from paper_trades`;
      await rig.until(
        "an attempt for every paper trade",
        async () =>
          await rig.count("upbit_order_attempts", `paper_trade_id <= ${last!.id}`) >=
            await rig.count("paper_trades", `id <= ${last!.id}`),
      );
      // Stop the pipeline so the tables hold still, then check them.
      await rig.upbot.supervisor.stop("checking");
      const papers = await assertPaperTradesContiguous(rig.sql);
      assert.ok(papers >= 3, `${papers} paper trades`);
      await assertOneAttemptPerPaperTrade(rig.sql);
      const bars = await assertBarsContiguous(rig.sql, markets);
      assert.ok(bars > 20, `${bars} final bars`);
      assert.deepEqual(
        rig.events.filter((e) => e.type === "actor.failed" || e.type === "trading.halted"),
        [],
      );
    },
  );

  Deno.test({
    name:
      `worker faults: every actor survives a hang; nothing lost or doubled afterwards [${backend}]`,
    // Deno does not stop a worker terminated inside a busy loop: its thread runs on and its
    // sockets stay open (denoland/deno#35657). Before the supervisor ended a terminated
    // incarnation's database sessions (lib/pipeline/actor_sessions.ts), a hung actor's
    // connections outlived it: one left inside a transaction stalled the embedded database, and
    // this drill (all five actors hung at once, twice) failed on PGlite (new connections timed
    // out, restarted actors missed their ready, paper trades piled up without attempts). It
    // passes now on both databases (23-36 s each here); it stays opt-in for its cost (five
    // threads spinning for 20 s on the machine's cores), and the single-actor hang test above
    // runs always. WORKER_FAULTS_HANG=1 runs it.
    ignore: Deno.env.get("WORKER_FAULTS_HANG") !== "1",
    fn: async () => {
      const markets = ["KRW-BTC", "KRW-ETH"];
      await using sim = await startDisposableSimulator({ seed: 23, markets, rate: 200 });
      await using rig = await startUpbotRig({
        backend,
        sim,
        markets,
        env: { ...simKeys, PAPER_POLICY_PROFILE: "test", ACCOUNT_POLL_INTERVAL_SEC: "1" },
        supervisor: {
          faultInjection: true,
          heartbeatIntervalMs: 200,
          heartbeatTimeoutMs: 2_000,
          maxRestarts: 100,
        },
      });
      await rig.until("a paper trade", async () => await rig.count("paper_trades") > 0);
      // All five at once, twice: a hang that falls inside a transaction is what hurts.
      for (let round = 0; round < 2; round++) {
        await Promise.all(ACTORS.map(async (actor) => {
          const before = incarnation(rig.events, actor);
          rig.upbot.supervisor.injectFault(actor, "hang");
          await rig.until(
            `${actor} restarted after a hang`,
            () => incarnation(rig.events, actor) > before,
            60_000,
          );
        }));
      }
      let papersBefore = 0;
      await rig.until("the paper trades counted", async () => {
        papersBefore = await rig.count("paper_trades");
        return true;
      });
      await rig.until(
        "two more paper trades after the hangs",
        async () => await rig.count("paper_trades") >= papersBefore + 2,
        120_000,
      );
      const [last] = await rig.sql`select max(id)::int as id from paper_trades`;
      await rig.until(
        "an attempt for every paper trade",
        async () =>
          await rig.count("upbit_order_attempts", `paper_trade_id <= ${last!.id}`) >=
            await rig.count("paper_trades", `id <= ${last!.id}`),
        90_000,
      );
      await rig.upbot.supervisor.stop("checking");
      await assertPaperTradesContiguous(rig.sql);
      await assertOneAttemptPerPaperTrade(rig.sql);
      await assertBarsContiguous(rig.sql, markets);
    },
  });

  Deno.test(
    `worker faults: a critical actor in a crash loop fails, halts entries, and is started again later [${backend}]`,
    async () => {
      const markets = ["KRW-BTC", "KRW-ETH"];
      await using sim = await startDisposableSimulator({ seed: 22, markets, rate: 200 });
      await using rig = await startUpbotRig({
        backend,
        sim,
        markets,
        // A paper round trip within seconds (the test profile holds up to 30 s): the entry after
        // the halt comes sooner.
        env: { PAPER_POLICY_PROFILE: "test", EVAL_HORIZON_SEC: String(SHORT_HORIZON_SEC) },
        supervisor: {
          faultInjection: true,
          restartMinDelayMs: 50,
          restartMaxDelayMs: 200,
          maxRestarts: 3,
          restartWindowMs: 60_000,
          failedCriticalRetryMs: 2_000,
        },
      });
      await rig.until("a paper trade", async () => await rig.count("paper_trades") > 0);
      // The order-poller crashes each time it starts: after maxRestarts it fails.
      await rig.until(
        "order_poller failed",
        () => {
          const s = rig.upbot.supervisor.status().find((a) => a.name === "order_poller")!;
          if (s.state === "running") {
            rig.upbot.supervisor.injectFault("order_poller", "throw");
          }
          return s.state === "failed";
        },
        30_000,
      );
      assert.ok(
        rig.events.some((e) => e.type === "actor.failed" && e.actor === "order_poller"),
      );
      const halt = rig.events.find((e) => e.type === "trading.halted");
      assert.ok(halt && halt.type === "trading.halted" && halt.actor === "order_poller");
      assert.equal(rig.upbot.supervisor.health().tradingState, "halted");
      // The halt is stored (it survives a restart) and shows in the status JSON.
      await rig.until(
        "the supervisor's halt stored",
        async () => (await entryHaltReason(rig.sql, "KRW-BTC")) !== null,
      );
      const [stored] = await rig.sql`
        select changed_by from trading_state where scope = 'global' and halted`;
      assert.equal(stored?.changed_by, "supervisor");
      // The rest of the pipeline goes on (bars, paper trades), but no entry is attempted.
      const [mark] = await rig.sql`select coalesce(max(id), 0)::int as id from paper_trades`;
      await rig.until(
        "a new paper entry after the halt",
        async () =>
          await rig.count("paper_trades", `id > ${mark!.id} and action = 'ENTER_LONG'`) > 0,
      );
      // Wait until the executor has handled the new entries (each gets exactly one attempt row,
      // see assertOneAttemptPerPaperTrade): had it (wrongly) picked one up, that row says so.
      await rig.until(
        "the executor handled the entries after the halt",
        async () =>
          await rig.count(
            "upbit_order_attempts a join paper_trades p on p.id = a.paper_trade_id",
            `p.id > ${mark!.id} and p.action = 'ENTER_LONG'`,
          ) >= await rig.count("paper_trades", `id > ${mark!.id} and action = 'ENTER_LONG'`),
      );
      assert.equal(
        await rig.count(
          "upbit_order_attempts a join paper_trades p on p.id = a.paper_trade_id",
          `p.id > ${
            mark!.id
          } and p.action = 'ENTER_LONG' and not (a.state = 'skipped' and a.reason = 'entries_halted')`,
        ),
        0,
        "no entry attempted after the halt (only recorded as skipped: entries_halted)",
      );
      for (const name of ["feed", "evaluator", "executor"]) {
        assert.equal(
          rig.upbot.supervisor.status().find((a) => a.name === name)!.state,
          "running",
          name,
        );
      }
      // Failed is not for good for a critical actor: it closes live positions (the poller brings
      // fills to the ledger), so it is started again after failedCriticalRetryMs, once the crash
      // stopped; the halt stays until a person resumes.
      await rig.until(
        "order_poller started again",
        () =>
          rig.upbot.supervisor.status().find((a) => a.name === "order_poller")!.state === "running",
        30_000,
      );
      assert.equal(rig.upbot.supervisor.health().tradingState, "halted");
      assert.notEqual(await entryHaltReason(rig.sql, "KRW-BTC"), null);
    },
  );
}
