/**
 * @module The supervisor's halt is stored even when the database refuses its first writes: it is
 * tried again until stored, so it survives a restart until a person resumes it; a resume of the
 * stored halt lifts the running process's halt too, and nothing lifts it before it was stored. A
 * running upbot on the simulator; the refusal is a trigger of the test's own on `trading_state`,
 * dropped once the first write has failed.
 */
import assert from "node:assert/strict";
import {
  entryHaltReason,
  GLOBAL_SCOPE,
  haltEntries,
  resumeEntries,
} from "../lib/control/trading_state.ts";
import { HALT_LIFT_CHECK_MS } from "../lib/pipeline/halt_lift.ts";
import { testBackends } from "./_db.ts";
import { startDisposableSimulator, startUpbotRig } from "./_fault_rig.ts";

/** The executor's own view of the supervisor's halt (its heartbeat metric). */
function executorHalted(rig: Awaited<ReturnType<typeof startUpbotRig>>): unknown {
  return rig.upbot.supervisor.status().find((a) => a.name === "executor")?.metrics
    .supervisor_halt;
}

for (const backend of testBackends()) {
  Deno.test(
    `the supervisor's halt: a write the database refused is tried again until stored; a resume lifts it [${backend}]`,
    async () => {
      const markets = ["KRW-BTC"];
      await using sim = await startDisposableSimulator({ seed: 23, markets, rate: 0 });
      await using rig = await startUpbotRig({
        backend,
        sim,
        markets,
        supervisor: {
          faultInjection: true,
          restartMinDelayMs: 50,
          restartMaxDelayMs: 200,
          maxRestarts: 3,
          restartWindowMs: 60_000,
          // The failed order-poller is started again this long after it failed: a resume before
          // that does not lift the supervisor's halt.
          failedCriticalRetryMs: 9_000,
        },
      });
      await rig.sql.unsafe(`
        create function test_refuse_halt() returns trigger language plpgsql as $$
        begin raise exception 'the test refuses the halt'; end $$;
        create trigger test_refuse_halt before insert or update on trading_state
          for each row when (new.changed_by = 'supervisor') execute function test_refuse_halt();`);
      // An earlier halt, resumed: the global scope has a row, not halted.
      await haltEntries(rig.sql, { scope: GLOBAL_SCOPE, reason: "an earlier halt", by: "cli" });
      await resumeEntries(rig.sql, { scope: GLOBAL_SCOPE, by: "cli" });
      // A critical actor in a crash loop fails: the supervisor halts trading.
      await rig.until("order_poller failed", () => {
        const s = rig.upbot.supervisor.status().find((a) => a.name === "order_poller")!;
        if (s.state === "running") rig.upbot.supervisor.injectFault("order_poller", "throw");
        return s.state === "failed";
      }, 30_000);
      assert.equal(rig.upbot.supervisor.health().tradingState, "halted");
      await rig.until(
        "the halt's write refused",
        () => rig.lines.some((l) => l.includes("could not store the supervisor's halt")),
      );
      assert.equal(await entryHaltReason(rig.sql, "KRW-BTC"), null, "not stored yet");
      // Not stored, the global scope not halted says nothing: the halt holds.
      await new Promise((r) => setTimeout(r, HALT_LIFT_CHECK_MS * 1.5));
      assert.equal(rig.upbot.supervisor.health().tradingState, "halted");

      await rig.sql.unsafe(`drop trigger test_refuse_halt on trading_state`);
      await rig.until(
        "the supervisor's halt stored",
        async () => (await entryHaltReason(rig.sql, "KRW-BTC")) !== null,
        10_000,
      );
      const [stored] = await rig.sql`
        select changed_by from trading_state where scope = 'global' and halted`;
      assert.equal(stored?.changed_by, "supervisor");
      const said = rig.lines.map((l) => JSON.parse(l) as { level: string; msg: string });
      assert.ok(
        said.some((l) =>
          l.level === "warn" &&
          l.msg === "could not store the supervisor's halt; trying again in 1 s"
        ),
      );
      assert.ok(
        said.some((l) =>
          l.level === "info" && /^Stored the supervisor's halt after \d+ failed attempt/.test(l.msg)
        ),
      );

      // A person resumes the stored halt: the running process's halt is lifted too, and the
      // executor learns it (no restart needed).
      await rig.until("the executor sees the halt", () => executorHalted(rig) === true, 10_000);
      await resumeEntries(rig.sql, { scope: GLOBAL_SCOPE, by: "cli" });
      // Not while the order-poller that failed is not running; once it runs again.
      await rig.until(
        "the lift waits for the failed actor",
        () => rig.lines.some((l) => l.includes("order_poller is not running")),
        10_000,
      );
      assert.equal(rig.upbot.supervisor.health().tradingState, "halted");
      await rig.until(
        "the supervisor's halt lifted",
        () => rig.upbot.supervisor.health().tradingState === "active",
        15_000,
      );
      assert.equal(
        rig.upbot.supervisor.status().find((a) => a.name === "order_poller")?.state,
        "running",
      );
      assert.equal(rig.upbot.supervisor.health().healthy, true);
      await rig.until("the executor sees it lifted", () => executorHalted(rig) === false, 10_000);
      assert.ok(
        rig.lines.some((l) => l.includes("The global halt was resumed by cli")),
        "said in the log",
      );
    },
  );
}
