import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { actorPermissions, hostPort } from "../lib/actors/permissions.ts";
import { UpbotSupervisor } from "../lib/pipeline/supervisor.ts";
import { startSimulator } from "../sim/mod.ts";

const fixture = new URL("./fixtures/actors/upbit_client.ts", import.meta.url);

/** Polls `check` until it returns true; fails after `timeoutMs` (a guard, not a timing test). */
async function waitFor(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test("a 418 drawn by one actor is known to every actor at once: the other refuses locally", async () => {
  const lines: string[] = [];
  const restore = setLogSink((line) => lines.push(line));
  // The default group squeezed to 1/s: a burst draws 429s, then a 418.
  const sim = await startSimulator({ port: 0, rate: 0, faults: { rate_limit_factor: 0.034 } });
  const config = { restUrl: sim.restUrl, accessKey: sim.accessKey, secretKey: sim.secretKey };
  const permissions = actorPermissions({ net: [hostPort(sim.restUrl)] });
  const supervisor = new UpbotSupervisor({
    actors: [
      { name: "drawer", module: fixture, config, permissions },
      { name: "bystander", module: fixture, config, permissions },
    ],
    log: { level: "error", format: "json" },
    heartbeatIntervalMs: 50,
    statusLogIntervalMs: 0,
  });
  const metrics = (name: string) => supervisor.status().find((s) => s.name === name)?.metrics ?? {};
  try {
    await supervisor.start();
    supervisor.send("drawer", { type: "wake", topic: "paper_trades" });
    await waitFor("the drawer's burst", () => metrics("drawer").errors !== undefined);
    assert.match(String(metrics("drawer").errors), /UpbitBanResponseError/);
    await waitFor(
      "the bystander told of the ban",
      () => metrics("bystander").afterBan !== undefined,
    );
    // Its call was refused by its own limiter, before sending (a 418 from the server would be
    // UpbitBanResponseError): it had never drawn a 429 or 418 itself.
    assert.equal(metrics("bystander").afterBan, "UpbitBanActiveError");
    assert.equal(metrics("bystander").from, "supervisor");
    assert.ok(Number(metrics("bystander").untilMs) > 0);
    // The drawer is not told its own ban back.
    assert.equal(metrics("drawer").afterBan, undefined);
    assert.ok(lines.some((l) => l.includes("Upbit ban (418)")));
  } finally {
    await supervisor.stop("test end");
    await sim.close();
    restore();
  }
});

Deno.test("an actor restarted during a ban learns it when ready", async () => {
  const restore = setLogSink(() => {});
  const sim = await startSimulator({ port: 0, rate: 0 });
  const config = { restUrl: sim.restUrl, accessKey: sim.accessKey, secretKey: sim.secretKey };
  const permissions = actorPermissions({ net: [hostPort(sim.restUrl)] });
  const supervisor = new UpbotSupervisor({
    actors: [
      { name: "announcer", module: fixture, config, permissions },
      { name: "restarted", module: fixture, config, permissions },
    ],
    log: { level: "error", format: "json" },
    heartbeatIntervalMs: 50,
    restartMinDelayMs: 20,
    restartJitter: 0,
    statusLogIntervalMs: 0,
  });
  const status = (name: string) => supervisor.status().find((s) => s.name === name);
  try {
    await supervisor.start();
    supervisor.send("announcer", { type: "wake", topic: "account" });
    await waitFor("the ban delivered", () => status("restarted")?.metrics.afterBan !== undefined);
    const first = status("restarted")?.metrics.incarnation;
    assert.equal(typeof first, "string");
    assert.equal(supervisor.kill("restarted"), true);
    await waitFor(
      "the new incarnation told of the ban",
      () =>
        status("restarted")?.metrics.incarnation !== first &&
        status("restarted")?.metrics.afterBan !== undefined,
    );
    assert.equal(status("restarted")?.restarts, 1);
    assert.equal(status("restarted")?.metrics.afterBan, "UpbitBanActiveError");
    assert.equal(sim.orders().length, 0);
  } finally {
    await supervisor.stop("test end");
    await sim.close();
    restore();
  }
});
