import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { type ActorSpec, secretsInConfig } from "../lib/actors/supervisor.ts";
import type { UpbotMessage } from "../lib/pipeline/messages.ts";
import {
  UpbotSupervisor,
  type UpbotSupervisorEvent,
  type UpbotSupervisorOptions,
} from "../lib/pipeline/supervisor.ts";

const fixture = (name: string) => new URL(`./fixtures/actors/${name}.ts`, import.meta.url);

/** Polls `check` until it returns true; fails after `timeoutMs` (a guard, not a timing test). */
async function waitFor(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface Harness {
  supervisor: UpbotSupervisor;
  events: UpbotSupervisorEvent[];
  received: { message: UpbotMessage; from: string }[];
  lines: string[];
  [Symbol.asyncDispose](): Promise<void>;
}

/** A supervisor with fast test timings whose events, messages and main-thread logs are kept. */
function harness(actors: ActorSpec[], options: Partial<UpbotSupervisorOptions> = {}): Harness {
  const lines: string[] = [];
  const restoreSink = setLogSink((line) => lines.push(line));
  const events: UpbotSupervisorEvent[] = [];
  const received: { message: UpbotMessage; from: string }[] = [];
  const supervisor = new UpbotSupervisor({
    actors,
    log: { level: "error", format: "json" },
    heartbeatIntervalMs: 50,
    heartbeatTimeoutMs: 2_000,
    restartMinDelayMs: 20,
    restartMaxDelayMs: 200,
    restartJitter: 0,
    startTimeoutMs: 10_000,
    shutdownTimeoutMs: 2_000,
    statusLogIntervalMs: 0,
    onEvent: (e) => events.push(e),
    onMessage: (message, from) => received.push({ message, from }),
    ...options,
  });
  return {
    supervisor,
    events,
    received,
    lines,
    async [Symbol.asyncDispose]() {
      await supervisor.stop("test end");
      restoreSink();
    },
  };
}

function statusOf(supervisor: UpbotSupervisor, name: string) {
  const s = supervisor.status().find((a) => a.name === name);
  assert.ok(s, `no status for ${name}`);
  return s;
}

Deno.test("Supervisor restarts a throwing actor within the backoff bounds", async () => {
  // random() = 0.5 with jitter 0.5: each delay is 1.25 x min(max, 40 * 2^n), capped at 300.
  await using h = harness([
    { name: "thrower", module: fixture("throwing"), config: { when: "start" } },
  ], {
    restartMinDelayMs: 40,
    restartMaxDelayMs: 300,
    restartJitter: 0.5,
    random: () => 0.5,
    maxRestarts: 100,
  });
  await h.supervisor.start();
  await waitFor(
    "four restarts",
    () => h.events.filter((e) => e.type === "actor.restarting").length >= 4,
  );
  const delays = h.events.flatMap((e) => e.type === "actor.restarting" ? [e.delayMs] : []);
  assert.deepEqual(delays.slice(0, 4), [50, 100, 200, 300]);
  for (const d of delays) assert.ok(d >= 40 && d <= 300, `delay ${d} out of bounds`);
  const crash = h.events.find((e) => e.type === "actor.crashed");
  assert.ok(crash?.type === "actor.crashed" && crash.error.includes("boom in start"));
  const s = statusOf(h.supervisor, "thrower");
  assert.ok(s.restarts >= 4);
  assert.match(s.lastError ?? "", /boom in start/);
});

Deno.test("Supervisor restarts an actor after an uncaught error and after a throwing handler", async () => {
  await using h = harness([
    { name: "timer", module: fixture("throwing"), config: { when: "timer", afterMs: 30 } },
    { name: "handler", module: fixture("throwing"), config: { when: "message" } },
  ], { maxRestarts: 100 });
  await h.supervisor.start();
  h.supervisor.send("handler", { type: "wake", topic: "account" });
  await waitFor(
    "both started twice",
    () =>
      ["timer", "handler"].every((name) =>
        h.events.filter((e) => e.type === "actor.started" && e.actor === name).length >= 2
      ),
  );
  const errors = h.events.flatMap((e) =>
    e.type === "actor.crashed" ? [`${e.actor}: ${e.error}`] : []
  );
  assert.ok(
    errors.some((e) => e.startsWith("timer: uncaught error") && e.includes("boom in timer")),
  );
  assert.ok(errors.some((e) => e === "handler: Error: boom in handler"));
  // The main thread survived an uncaught error in a worker: we are still here, and running.
  assert.equal(h.supervisor.tradingState, "active");
});

Deno.test("Supervisor detects a hung actor by its missing heartbeats and restarts it", async () => {
  await using h = harness([
    { name: "hung", module: fixture("hanging"), config: { hangAfterMs: 30 } },
  ], { heartbeatIntervalMs: 50, heartbeatTimeoutMs: 300, maxRestarts: 100 });
  await h.supervisor.start();
  await waitFor(
    "a restart after the hang",
    () => h.events.filter((e) => e.type === "actor.started").length >= 2,
  );
  const crash = h.events.find((e) => e.type === "actor.crashed");
  assert.ok(crash?.type === "actor.crashed");
  assert.match(crash.error, /^heartbeat timeout: no pong for \d+ ms/);
  assert.ok(statusOf(h.supervisor, "hung").restarts >= 1);
});

Deno.test("Supervisor fails a crash-looping critical actor and halts trading", async () => {
  const halts: { reason: string; actor: string | null }[] = [];
  await using h = harness([
    { name: "echo", module: fixture("echo") },
    { name: "executor", module: fixture("throwing"), config: { when: "start" }, critical: true },
  ], {
    maxRestarts: 2,
    restartWindowMs: 60_000,
    onTradingHalt: (reason, actor) => halts.push({ reason, actor }),
  });
  await h.supervisor.start();
  assert.equal(h.supervisor.health().healthy, true);
  await waitFor("executor failed", () => statusOf(h.supervisor, "executor").state === "failed");
  const executor = statusOf(h.supervisor, "executor");
  assert.equal(executor.restarts, 2);
  assert.match(executor.lastError ?? "", /restart intensity exceeded: 2 restarts within 60000 ms/);
  assert.equal(h.events.filter((e) => e.type === "actor.crashed").length, 3);
  assert.equal(h.supervisor.tradingState, "halted");
  assert.deepEqual(h.supervisor.health(), {
    healthy: false,
    tradingState: "halted",
    haltReason: h.supervisor.haltReason,
    failed: ["executor"],
  });
  assert.equal(halts.length, 1);
  assert.equal(halts[0]?.actor, "executor");
  assert.match(halts[0]?.reason ?? "", /^critical actor executor failed/);
  // The other actors were told, and stay up.
  await waitFor("echo saw the halt", () => statusOf(h.supervisor, "echo").metrics.halted === true);
  assert.equal(statusOf(h.supervisor, "echo").state, "running");
  // No more restarts of a failed actor; messages to it are dropped and counted.
  h.supervisor.send("executor", { type: "wake", topic: "order_attempts" });
  assert.equal(statusOf(h.supervisor, "executor").dropped, 1);
});

Deno.test("Supervisor starts a failed critical actor again after failedCriticalRetryMs, with a new restart budget", async () => {
  await using h = harness([
    { name: "executor", module: fixture("throwing"), config: { when: "start" }, critical: true },
  ], {
    maxRestarts: 1,
    restartWindowMs: 60_000,
    restartMinDelayMs: 20,
    failedCriticalRetryMs: 1_000,
  });
  const failures = () => h.events.filter((e) => e.type === "actor.failed").length;
  await h.supervisor.start();
  await waitFor("executor failed", () => failures() === 1);
  // Failed until the retry, which is neither counted nor reported before it happens.
  assert.equal(statusOf(h.supervisor, "executor").state, "failed");
  assert.equal(statusOf(h.supervisor, "executor").restarts, 1);
  await waitFor("executor failed again, after the retry", () => failures() === 2);
  const seen = h.events.flatMap((e) =>
    e.type === "actor.restarting"
      ? [`restarting in ${e.delayMs} ms (restart ${e.restarts})`]
      : e.type === "actor.crashed" || e.type === "actor.failed"
      ? [e.type]
      : []
  );
  assert.deepEqual(seen.slice(0, seen.lastIndexOf("actor.failed") + 1), [
    "actor.crashed",
    "restarting in 20 ms (restart 1)",
    "actor.crashed",
    "actor.failed",
    // The retry: its budget new (one restart within the window), the backoff from the start.
    "restarting in 1000 ms (restart 2)",
    "actor.crashed",
    "restarting in 20 ms (restart 3)",
    "actor.crashed",
    "actor.failed",
  ]);
});

Deno.test("Supervisor.kill() cuts an actor off mid-message and applies its restart policy", async () => {
  await using h = harness([
    { name: "echo", module: fixture("echo"), config: { slowMs: 5_000 } },
    { name: "once", module: fixture("echo"), restart: "temporary" },
  ]);
  await h.supervisor.start();
  h.supervisor.send("echo", { type: "wake", topic: "account" });
  // Let the (5 s) slow handler begin; the kill lands in its middle.
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(h.supervisor.kill("echo", "drill"), true);
  assert.deepEqual(h.events.find((e) => e.type === "actor.crashed"), {
    type: "actor.crashed",
    actor: "echo",
    error: "drill",
  });
  await waitFor("echo running again", () => statusOf(h.supervisor, "echo").state === "running");
  const echo = statusOf(h.supervisor, "echo");
  assert.equal(echo.restarts, 1);
  assert.equal(echo.lastError, "drill");
  // The slow wake was cut off: nothing was echoed back.
  assert.deepEqual(h.received, []);
  // A temporary actor is not restarted after a kill, like after any crash.
  assert.equal(h.supervisor.kill("once"), true);
  assert.equal(statusOf(h.supervisor, "once").state, "failed");
  assert.equal(statusOf(h.supervisor, "once").lastError, "killed by request");
  assert.equal(h.supervisor.kill("once"), false, "a failed actor has no worker to kill");
  assert.throws(() => h.supervisor.kill("nobody"), {
    name: "RangeError",
    message: "Cannot kill actor as 'nobody' is unknown",
  });
});

Deno.test("Supervisor does not halt trading when a non-critical actor fails", async () => {
  await using h = harness([
    { name: "account", module: fixture("throwing"), config: { when: "start" } },
  ], { maxRestarts: 1 });
  await h.supervisor.start();
  await waitFor("account failed", () => statusOf(h.supervisor, "account").state === "failed");
  assert.equal(h.supervisor.tradingState, "active");
  assert.deepEqual(h.supervisor.health().failed, ["account"]);
});

Deno.test("Supervisor restart policies: temporary is never restarted, transient not after exit", async () => {
  await using h = harness([
    { name: "temp", module: fixture("throwing"), config: { when: "start" }, restart: "temporary" },
    {
      name: "trans",
      module: fixture("echo"),
      config: { exitOnTopic: "account" },
      restart: "transient",
    },
    { name: "perm", module: fixture("echo"), config: { exitOnTopic: "account" } },
  ]);
  await h.supervisor.start();
  h.supervisor.send("trans", { type: "wake", topic: "account" });
  h.supervisor.send("perm", { type: "wake", topic: "account" });
  await waitFor(
    "perm restarted",
    () => h.events.filter((e) => e.type === "actor.started" && e.actor === "perm").length === 2,
  );
  await waitFor("trans stopped", () => statusOf(h.supervisor, "trans").state === "stopped");
  assert.equal(statusOf(h.supervisor, "temp").state, "failed");
  assert.equal(statusOf(h.supervisor, "temp").restarts, 0);
  assert.equal(statusOf(h.supervisor, "trans").restarts, 0);
  assert.equal(statusOf(h.supervisor, "perm").restarts, 1);
  const exits = h.events.flatMap((e) => e.type === "actor.exited" ? [e.actor] : []);
  assert.deepEqual(exits.sort(), ["perm", "trans"]);
});

Deno.test("Supervisor stops actors in reverse order, terminating one past its timeout", async () => {
  const controller = new AbortController();
  await using h = harness([
    { name: "first", module: fixture("echo") },
    { name: "second", module: fixture("echo") },
    {
      name: "slow",
      module: fixture("echo"),
      config: { stopDelayMs: 60_000 },
      shutdownTimeoutMs: 200,
    },
  ], { signal: controller.signal });
  await h.supervisor.start();
  const started = h.events.flatMap((e) => e.type === "actor.started" ? [e.actor] : []);
  assert.deepEqual(started, ["first", "second", "slow"]);
  controller.abort(); // as SIGTERM would
  await h.supervisor.stop();
  const stopped = h.events.flatMap((e) =>
    e.type === "actor.stopped" ? [`${e.actor}:${e.graceful ? "graceful" : "terminated"}`] : []
  );
  assert.deepEqual(stopped, ["slow:terminated", "second:graceful", "first:graceful"]);
  assert.deepEqual(h.supervisor.status().map((s) => s.state), ["stopped", "stopped", "stopped"]);
});

Deno.test("Supervisor routes messages between actors and to the main thread", async () => {
  await using h = harness([
    { name: "front", module: fixture("echo"), config: { forwardTo: "back" } },
    { name: "back", module: fixture("echo") },
  ]);
  await h.supervisor.start();
  const bars: UpbotMessage = {
    type: "bars.final",
    market: "KRW-BTC",
    bars: [1, 2, 3].map((i) => ({
      ts: 1_700_000_000_000 + i * 1000,
      open: 100,
      high: 101,
      low: 99,
      close: 100.5,
      volume: 0.5,
      quoteVolume: 50.25,
      tradeCount: 7,
      buyVolume: 0.3,
      sellVolume: 0.2,
    })),
  };
  h.supervisor.send("front", bars);
  h.supervisor.send("front", { type: "wake", topic: "paper_trades" });
  await waitFor("two round trips", () => h.received.length >= 2);
  assert.deepEqual(h.received, [
    { message: bars, from: "front" },
    { message: { type: "wake", topic: "paper_trades" }, from: "front" },
  ]);
  const front = statusOf(h.supervisor, "front");
  const back = statusOf(h.supervisor, "back");
  // front: 2 from the main thread + 2 answers from back in; 2 to back + 2 to main out.
  assert.deepEqual([front.messagesIn, front.messagesOut], [4, 4]);
  assert.deepEqual([back.messagesIn, back.messagesOut], [2, 2]);
});

const oneBar: UpbotMessage = {
  type: "bars.final",
  market: "KRW-ETH",
  bars: [{
    ts: 1_700_000_000_000,
    open: 1,
    high: 1,
    low: 1,
    close: 1,
    volume: 1,
    quoteVolume: 1,
    tradeCount: 1,
    buyVolume: 1,
    sellVolume: 0,
  }],
};

Deno.test("Supervisor buffers messages for a restarting actor up to the limit, then delivers", async () => {
  await using h = harness([
    { name: "echo", module: fixture("echo"), config: { crashOnTopic: "account" } },
  ], { restartMinDelayMs: 300, restartMaxDelayMs: 300, mailboxLimit: 2, maxRestarts: 10 });
  await h.supervisor.start();
  h.supervisor.send("echo", { type: "wake", topic: "account" });
  await waitFor("restarting", () => statusOf(h.supervisor, "echo").state === "restarting");
  h.supervisor.send("echo", { type: "wake", topic: "paper_trades" });
  h.supervisor.send("echo", { type: "wake", topic: "order_attempts" });
  h.supervisor.send("echo", { type: "wake", topic: "paper_trades" }); // merged with the first
  h.supervisor.send("echo", oneBar); // over the limit: the oldest goes
  const during = statusOf(h.supervisor, "echo");
  assert.deepEqual([during.buffered, during.dropped], [2, 1]);
  await waitFor("buffered delivered", () => h.received.length >= 2);
  assert.deepEqual(h.received.map((r) => r.message), [
    { type: "wake", topic: "order_attempts" },
    oneBar,
  ]);
  assert.equal(statusOf(h.supervisor, "echo").buffered, 0);
});

Deno.test("An actor merges identical wakes waiting in its mailbox", async () => {
  await using h = harness([{ name: "echo", module: fixture("echo"), config: { slowMs: 500 } }]);
  await h.supervisor.start();
  for (let i = 0; i < 5; i++) h.supervisor.send("echo", { type: "wake", topic: "paper_trades" });
  await waitFor("two answers", () => h.received.length >= 2);
  await waitFor(
    "a heartbeat after both",
    () => statusOf(h.supervisor, "echo").metrics.echoed === 2,
  );
  const s = statusOf(h.supervisor, "echo");
  assert.equal(s.messagesIn, 5);
  assert.equal(s.coalesced, 3);
  assert.equal(h.received.length, 2);
});

Deno.test("Supervisor drops and counts invalid messages in both directions without crashing", async () => {
  await using h = harness([
    { name: "garbage", module: fixture("garbage") },
    { name: "echo", module: fixture("echo") },
  ]);
  await h.supervisor.start();
  await waitFor("garbage counted", () => statusOf(h.supervisor, "garbage").invalidOut >= 5);
  assert.equal(statusOf(h.supervisor, "garbage").invalidOut, 5);
  assert.equal(statusOf(h.supervisor, "garbage").state, "running");
  const warnings = h.lines.filter((l) => l.includes("invalid message from actor dropped"));
  assert.equal(warnings.length, 4);
  assert.ok(warnings.every((l) => JSON.parse(l).from === "garbage"));
  // Worker side: an invalid message reaching the actor is dropped and counted there.
  h.supervisor.send("echo", { type: "wake", topic: "bogus" } as unknown as UpbotMessage);
  h.supervisor.send("echo", { type: "wake", topic: "account" });
  await waitFor("echo answered", () => h.received.length >= 1);
  await waitFor("invalidIn reported", () => statusOf(h.supervisor, "echo").invalidIn === 1);
  assert.deepEqual(h.received, [{ message: { type: "wake", topic: "account" }, from: "echo" }]);
  assert.equal(statusOf(h.supervisor, "echo").state, "running");
  assert.equal(h.events.filter((e) => e.type === "actor.crashed").length, 0);
});

Deno.test("Supervisor status has every field for every actor", async () => {
  await using h = harness([{ name: "echo", module: fixture("echo") }]);
  await h.supervisor.start();
  await waitFor("a heartbeat", () => statusOf(h.supervisor, "echo").metrics.echoed === 0);
  const [s] = h.supervisor.status();
  assert.ok(s);
  assert.equal(s.name, "echo");
  assert.equal(s.state, "running");
  assert.equal(s.restartPolicy, "permanent");
  assert.equal(s.critical, false);
  assert.equal(s.restarts, 0);
  assert.equal(s.lastError, null);
  assert.equal(typeof s.lastHeartbeatAgeMs, "number");
  assert.equal(typeof s.uptimeMs, "number");
  assert.deepEqual([s.messagesIn, s.messagesOut, s.dropped, s.invalidIn, s.invalidOut], [
    0,
    0,
    0,
    0,
    0,
  ]);
  assert.ok(s.memory !== null && s.memory.heapUsed > 0, "the heap came with the heartbeat");
  h.supervisor.logStatus();
  const summary = h.lines.map((l) => JSON.parse(l)).find((r) => r.msg === "actors status");
  assert.equal(summary?.actor, "supervisor");
  assert.equal(summary?.trading, "active");
  assert.match(summary?.actors?.echo ?? "", /^running restarts=0 in=0 out=0 dropped=0/);
});

Deno.test("Supervisor status carries each running actor's own heap from its heartbeat", async () => {
  await using h = harness([
    { name: "echo", module: fixture("echo") },
    { name: "once", module: fixture("echo"), restart: "temporary" },
  ]);
  await h.supervisor.start();
  await waitFor("both heaps", () => h.supervisor.status().every((s) => s.memory !== null));
  for (const s of h.supervisor.status()) {
    const memory = s.memory!;
    assert.ok(Number.isInteger(memory.heapUsed) && memory.heapUsed > 0, `${s.name}: heapUsed`);
    assert.ok(memory.heapTotal >= memory.heapUsed, `${s.name}: heapTotal`);
    assert.ok(Number.isInteger(memory.external) && memory.external >= 0, `${s.name}: external`);
  }
  // A stopped actor has no heap to report.
  h.supervisor.kill("once");
  assert.equal(statusOf(h.supervisor, "once").memory, null);
});

Deno.test("Supervisor rejects bad options with a clear message", () => {
  assert.throws(
    () => new UpbotSupervisor({ actors: [], restartMinDelayMs: 10, restartMaxDelayMs: 5 }),
    new RangeError(
      "Cannot back off as 'maxDelayMs' must be >= 'minDelayMs': current value is 5",
    ),
  );
  assert.throws(
    () => new UpbotSupervisor({ actors: [{ name: "Feed", module: fixture("echo") }] }),
    /actor name 'Feed' is not lower snake_case/,
  );
  assert.throws(
    () =>
      new UpbotSupervisor({
        actors: [{ name: "a", module: fixture("echo") }, { name: "a", module: fixture("echo") }],
      }),
    /actor 'a' is listed twice/,
  );
});

Deno.test("Supervisor resets the backoff after a stable run and forgets restarts outside the window", async () => {
  let offsetMs = 0;
  await using h = harness([
    { name: "handler", module: fixture("throwing"), config: { when: "message" } },
  ], {
    restartMinDelayMs: 20,
    restartMaxDelayMs: 1_000,
    restartResetAfterMs: 10_000,
    maxRestarts: 3,
    restartWindowMs: 30_000,
    now: () => Date.now() + offsetMs,
  });
  await h.supervisor.start();
  const crashAndRestart = async (n: number) => {
    h.supervisor.send("handler", { type: "wake", topic: "account" });
    await waitFor(
      `start ${n + 1}`,
      () => h.events.filter((e) => e.type === "actor.started").length === n + 1,
    );
  };
  await crashAndRestart(1);
  await crashAndRestart(2);
  offsetMs += 10_000; // a stable run: the next restart starts the curve again
  await crashAndRestart(3);
  offsetMs += 30_000; // the three restarts so far leave the intensity window
  await crashAndRestart(4);
  const delays = h.events.flatMap((e) => e.type === "actor.restarting" ? [e.delayMs] : []);
  assert.deepEqual(delays, [20, 40, 20, 20]);
  assert.equal(statusOf(h.supervisor, "handler").state, "running");
  assert.equal(statusOf(h.supervisor, "handler").restarts, 4);
});

Deno.test("Supervisor loads later actors' modules ahead while earlier ones start, in order", async () => {
  // `first` is ready only once `second_announce`'s module was evaluated: that happens only when
  // its Worker exists before `first` is ready.
  const actors: ActorSpec[] = [
    { name: "first", module: fixture("loads_ahead"), config: { awaitLoaded: "second_announce" } },
    { name: "second_announce", module: fixture("loads_ahead") },
  ];
  {
    await using h = harness(actors);
    await h.supervisor.start();
    const started = h.events.flatMap((e) => e.type === "actor.started" ? [e.actor] : []);
    assert.deepEqual(started, ["first", "second_announce"], JSON.stringify(h.events));
    assert.deepEqual(h.supervisor.status().map((s) => [s.state, s.restarts]), [
      ["running", 0],
      ["running", 0],
    ]);
  }
  {
    // Without it, `second_announce` is created after `first` is ready: `first` never gets there.
    await using h = harness(
      [{ ...actors[0]!, startTimeoutMs: 300, restart: "temporary" }, actors[1]!],
      { loadModulesAhead: false },
    );
    await h.supervisor.start();
    assert.ok(
      h.events.some((e) =>
        e.type === "actor.crashed" && e.actor === "first" &&
        e.error === "no ready within 300 ms"
      ),
      JSON.stringify(h.events),
    );
    assert.equal(statusOf(h.supervisor, "second_announce").state, "running");
  }
});

Deno.test("Supervisor drops a Worker created ahead that talked before start, and starts a fresh one", async () => {
  await using h = harness([{ name: "talk_early", module: fixture("loads_ahead") }]);
  await h.supervisor.start();
  const s = statusOf(h.supervisor, "talk_early");
  assert.equal(s.state, "running", JSON.stringify(s));
  assert.equal(s.restarts, 0);
  // One invalid message counted: the fresh Worker's. The one created ahead went with its message.
  assert.equal(s.invalidOut, 1);
});

Deno.test("secretsInConfig() passes an actor holding DATABASE_URL its decoded password too", () => {
  // secretValues() lists both forms of a percent-encoded password; the decoded one is not a
  // substring of the URL, yet the actor's database client decodes it (and an error may quote it).
  const secrets = ["p%40ss%21word", "p@ss!word", "upbit-secret-key"];
  const connection = { kind: "url", url: "postgres://bob:p%40ss%21word@db:5432/upbot" };
  assert.deepEqual(secretsInConfig({ db: connection }, secrets), ["p%40ss%21word", "p@ss!word"]);
  // Never a secret the slice does not hold; text that is not percent-encoding is fine.
  assert.deepEqual(secretsInConfig({ markets: ["KRW-BTC"], note: "50%off" }, secrets), []);
});
