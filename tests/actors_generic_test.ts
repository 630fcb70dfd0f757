/**
 * @module The actor runtime of lib/actors/ is generic: here it runs a tiny application that is not
 * upbot (tests/fixtures/actors/_counter_protocol.ts), with its own messages, coalescing rule,
 * context hook, urgent hook and supervisor policy.
 */
import assert from "node:assert/strict";
import {
  Supervisor,
  type SupervisorControl,
  type SupervisorEvent,
  type SupervisorOptions,
} from "../lib/actors/supervisor.ts";
import { setLogSink } from "../lib/log.ts";
import { type CounterMessage, counterProtocol } from "./fixtures/actors/_counter_protocol.ts";

const counter = new URL("./fixtures/actors/counter.ts", import.meta.url);

async function waitFor(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

type Options = Omit<SupervisorOptions<CounterMessage, { type: "counter.note" }>, "protocol">;

function counterSupervisor(options: Options) {
  const restoreSink = setLogSink(() => {});
  const supervisor = new Supervisor({
    protocol: counterProtocol,
    log: { level: "error", format: "json" },
    heartbeatIntervalMs: 50,
    restartMinDelayMs: 20,
    restartMaxDelayMs: 100,
    restartJitter: 0,
    statusLogIntervalMs: 0,
    ...options,
  });
  return {
    supervisor,
    async [Symbol.asyncDispose]() {
      await supervisor.stop("test end");
      restoreSink();
    },
  };
}

Deno.test("generic runtime: another application's messages, start state and coalescing", async () => {
  const totals: { message: CounterMessage; from: string }[] = [];
  await using h = counterSupervisor({
    actors: [{ name: "counter", module: counter, config: { slowMs: 100 } }],
    policy: { startState: (actor) => `hello ${actor}` },
    onMessage: (message, from) => totals.push({ message, from }),
  });
  await h.supervisor.start();
  h.supervisor.send("counter", { type: "add", n: 2 });
  h.supervisor.send("counter", { type: "add", n: 3 });
  // Two reports while the slow adds run: the second merges into the first (coalesceKey).
  h.supervisor.send("counter", { type: "report" });
  h.supervisor.send("counter", { type: "report" });
  // An add of 0 is taken ahead of the mailbox by the urgent hook (no handler runs for it).
  h.supervisor.send("counter", { type: "add", n: 0 });
  await waitFor("a total", () => totals.length === 1);
  assert.deepEqual(totals, [{
    message: { type: "total", value: 5, greeting: "hello counter" },
    from: "counter",
  }]);
  // A message outside the application's union is invalid at the boundary, dropped and counted.
  h.supervisor.send("counter", { type: "wake", topic: "account" } as unknown as CounterMessage);
  await waitFor("stats", () => h.supervisor.status()[0]!.invalidIn === 1);
  const [s] = h.supervisor.status();
  assert.equal(s!.coalesced, 1);
  assert.equal(s!.messagesIn, 6);
  assert.equal(s!.metrics.urgent, 1);
  assert.ok(s!.memory !== null && s!.memory.heapUsed > 0);
  assert.deepEqual(h.supervisor.health(), { healthy: true, failed: [] });
});

Deno.test("generic runtime: the policy hears failures, takes messages to the supervisor, replays on ready", async () => {
  const heard: string[] = [];
  const declined: CounterMessage[] = [];
  const events: (SupervisorEvent | { type: "counter.note" })[] = [];
  let control: SupervisorControl<CounterMessage, { type: "counter.note" }> | undefined;
  let healthy = true;
  await using h = counterSupervisor({
    actors: [
      { name: "counter", module: counter },
      // Crashes in start and may not be restarted: failed for good at once.
      {
        name: "broken",
        module: counter,
        config: { crash: true },
        critical: true,
        restart: "temporary",
      },
    ],
    policy: {
      attach: (c) => (control = c),
      startState: () => "hi",
      message(message, from) {
        heard.push(`${from}: ${message.type}`);
        return message.type === "total" && message.value === 0;
      },
      childFailed(actor, critical) {
        heard.push(`failed ${actor} critical=${critical}`);
        healthy = false;
        control?.emit({ type: "counter.note" });
      },
      childReady(actor) {
        heard.push(`ready ${actor}`);
        // A replay on ready, as upbot replays a running ban: this one asks for a report.
        if (actor === "counter") control?.send(actor, { type: "report" });
      },
      healthy: () => healthy,
    },
    onMessage: (message) => declined.push(message),
    onEvent: (e) => events.push(e),
  });
  await h.supervisor.start();
  await waitFor("broken failed", () => heard.includes("failed broken critical=true"));
  // The replayed report came back; the policy took the total of 0.
  await waitFor("the replayed report answered", () => heard.includes("counter: total"));
  assert.deepEqual(declined, []);
  // A total the policy declines goes on to onMessage.
  h.supervisor.send("counter", { type: "add", n: 4 });
  h.supervisor.send("counter", { type: "report" });
  await waitFor("declined total", () => declined.length === 1);
  assert.deepEqual(declined, [{ type: "total", value: 4, greeting: "hi" }]);
  assert.deepEqual(heard.filter((l) => l.startsWith("ready")), ["ready counter"]);
  assert.ok(events.some((e) => e.type === "counter.note"));
  assert.deepEqual(h.supervisor.health(), { healthy: false, failed: ["broken"] });
  assert.deepEqual(control?.children().map((c) => [c.name, c.state, c.critical]), [
    ["counter", "running", false],
    ["broken", "failed", true],
  ]);
});

Deno.test("generic runtime: afterStart runs once the actor is ready, ahead of its messages", async () => {
  const totals: CounterMessage[] = [];
  await using h = counterSupervisor({
    actors: [{ name: "counter", module: counter, config: { afterStartMs: 300 } }],
    policy: { startState: () => "hi" },
    onMessage: (message) => totals.push(message),
  });
  await h.supervisor.start();
  // Sent once it is ready: had they run before afterStart ended, the total would be 1.
  h.supervisor.send("counter", { type: "add", n: 1 });
  h.supervisor.send("counter", { type: "report" });
  await waitFor("the total", () => totals.length === 1);
  assert.deepEqual(totals, [{ type: "total", value: 101, greeting: "hi" }]);
});

Deno.test("generic runtime: a long afterStart holds up neither the next actor nor the start", async () => {
  const totals: CounterMessage[] = [];
  await using h = counterSupervisor({
    actors: [
      { name: "first", module: counter, config: { afterStartMs: 120_000 } },
      { name: "second", module: counter },
    ],
    policy: { startState: () => "hi" },
    onMessage: (message) => totals.push(message),
  });
  const t0 = performance.now();
  await h.supervisor.start();
  // Had start() waited for the first's afterStart, it would have taken two minutes.
  assert.ok(performance.now() - t0 < 60_000, `started in ${performance.now() - t0} ms`);
  assert.deepEqual(h.supervisor.status().map((s) => [s.name, s.state]), [
    ["first", "running"],
    ["second", "running"],
  ]);
  // Its messages wait behind it; the second's do not.
  h.supervisor.send("first", { type: "report" });
  h.supervisor.send("second", { type: "report" });
  await waitFor("the second's total", () => totals.length === 1);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(totals, [{ type: "total", value: 0, greeting: "hi" }]);
});

Deno.test("generic runtime: afterStart throwing is a crash; a stop aborts it and waits for it", async () => {
  const events: SupervisorEvent[] = [];
  await using h = counterSupervisor({
    actors: [
      { name: "broken", module: counter, config: { afterStartCrash: true }, restart: "temporary" },
      { name: "waiting", module: counter, config: { afterStartMs: 60_000 } },
    ],
    policy: { startState: () => "hi" },
    onEvent: (e) => events.push(e as SupervisorEvent),
  });
  await h.supervisor.start();
  await waitFor("broken failed", () => h.supervisor.status()[0]!.state === "failed");
  assert.ok(
    events.some((e) =>
      e.type === "actor.crashed" && e.actor === "broken" &&
      e.error.includes("counter: crash in afterStart")
    ),
    JSON.stringify(events),
  );
  await h.supervisor.stop("test");
  // Graceful: the signal ended the 60 s wait (its rejection is no crash) within the shutdown
  // timeout of 5 s, and the stop handler ran.
  assert.ok(
    events.some((e) => e.type === "actor.stopped" && e.actor === "waiting" && e.graceful),
    JSON.stringify(events),
  );
});

Deno.test("generic runtime: a restarted actor's metrics start empty, not the last incarnation's", async () => {
  const atRestart: Record<string, unknown>[] = [];
  await using h = counterSupervisor({
    actors: [{ name: "counter", module: counter }],
    policy: { startState: () => "hi" },
    faultInjection: true,
    onEvent(e) {
      // Ready, and no heartbeat of the new incarnation answered yet.
      if (e.type === "actor.started" && e.incarnation > 1) {
        atRestart.push({ ...h.supervisor.status()[0]!.metrics });
      }
    },
  });
  await h.supervisor.start();
  h.supervisor.send("counter", { type: "add", n: 5 });
  await waitFor("the metrics", () => h.supervisor.status()[0]!.metrics.total === 5);
  h.supervisor.injectFault("counter", "throw");
  await waitFor("the restart", () => atRestart.length === 1);
  assert.deepEqual(atRestart, [{}]);
});

Deno.test("generic runtime: the policy hears each termination without a clean stop, and whether it was a hang", async () => {
  const terminated: string[] = [];
  await using h = counterSupervisor({
    actors: [
      { name: "counter", module: counter, config: { slowMs: 3_000 } },
      // Busy past its start timeout: terminated silent, so hung.
      {
        name: "spinner",
        module: counter,
        config: { startSpinMs: 2_000 },
        startTimeoutMs: 1_000,
        restart: "temporary",
      },
    ],
    policy: {
      startState: () => "hi",
      childTerminated: (actor, hung) => terminated.push(`${actor} hung=${hung}`),
    },
    faultInjection: true,
    heartbeatIntervalMs: 50,
    heartbeatTimeoutMs: 500,
    shutdownTimeoutMs: 200,
  });
  await h.supervisor.start();
  assert.deepEqual(terminated, ["spinner hung=true"]);
  terminated.length = 0;
  h.supervisor.injectFault("counter", "throw");
  await waitFor("the crash heard", () => terminated.length === 1);
  await waitFor("running again", () => h.supervisor.status()[0]!.state === "running");
  h.supervisor.injectFault("counter", "hang");
  await waitFor("the hang heard", () => terminated.length === 2);
  await waitFor("running again", () => h.supervisor.status()[0]!.state === "running");
  // A stop that outlasts its timeout (a slow add ignores the signal) ends in terminate().
  h.supervisor.send("counter", { type: "add", n: 1 });
  await new Promise((r) => setTimeout(r, 100));
  await h.supervisor.stop("test");
  assert.deepEqual(terminated, [
    "counter hung=false",
    "counter hung=true",
    "counter hung=false",
  ]);
});
