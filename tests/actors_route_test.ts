import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { UpbotSupervisor } from "../lib/pipeline/supervisor.ts";
import { actorsRoute } from "../lib/http/actors_route.ts";

Deno.test("GET /api/actors returns one status object per actor", async () => {
  const restoreSink = setLogSink(() => {});
  const supervisor = new UpbotSupervisor({
    actors: [
      { name: "feed", module: new URL("./fixtures/actors/echo.ts", import.meta.url) },
      {
        name: "executor",
        module: new URL("./fixtures/actors/echo.ts", import.meta.url),
        critical: true,
      },
    ],
    log: { level: "error", format: "json" },
    statusLogIntervalMs: 0,
  });
  try {
    const routes = actorsRoute(supervisor);
    const before = await (await routes.request("/api/actors")).json();
    assert.deepEqual(before.map((a: { name: string; state: string }) => [a.name, a.state]), [
      ["feed", "stopped"],
      ["executor", "stopped"],
    ]);
    await supervisor.start();
    // The heap comes with the first heartbeat (one second by default).
    const deadline = Date.now() + 10_000;
    while (supervisor.status().some((a) => a.memory === null) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const res = await routes.request("/api/actors");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    const body = await res.json();
    assert.ok(Array.isArray(body));
    // The documented fields of an actor's status, written out: comparing with what the route
    // calls (supervisor.status()) could not catch a field the route drops or renames.
    const keys = [
      "buffered",
      "coalesced",
      "critical",
      "dropped",
      "invalidIn",
      "invalidOut",
      "lastError",
      "lastErrorAt",
      "lastHeartbeatAgeMs",
      "mailbox",
      "memory",
      "messagesIn",
      "messagesOut",
      "metrics",
      "name",
      "restartPolicy",
      "restarts",
      "state",
      "uptimeMs",
    ];
    for (const actor of body) assert.deepEqual(Object.keys(actor).sort(), keys);
    assert.deepEqual(body.map((a: { name: string; state: string }) => [a.name, a.state]), [
      ["feed", "running"],
      ["executor", "running"],
    ]);
    assert.equal(body[1].critical, true);
    // Each worker's own heap, from its heartbeat.
    for (const actor of body) {
      assert.deepEqual(Object.keys(actor.memory).sort(), ["external", "heapTotal", "heapUsed"]);
      assert.ok(actor.memory.heapUsed > 0, `${actor.name}: heapUsed ${actor.memory.heapUsed}`);
      assert.ok(actor.memory.heapTotal >= actor.memory.heapUsed);
    }
  } finally {
    await supervisor.stop();
    restoreSink();
  }
});
