/**
 * @module End-to-end tests of the control channel: a running upbot (through `startUpbot`, in
 * shadow mode against the simulator) and `deno task halt | resume | flatten` run as separate
 * processes with the same `DATA_DIR`, on every backend of `testBackends()` (PostgreSQL:
 * `DATABASE_URL` for the data, `DATA_DIR` for the control directory).
 */
import assert from "node:assert/strict";
import type { UpbotSupervisorOptions } from "../lib/pipeline/supervisor.ts";
import { parseConfig } from "../lib/config.ts";
import { controlDirLayout, enqueueControlCommand } from "../lib/control/command_dir.ts";
import { newControlCommand } from "../lib/control/commands.ts";
import {
  entryHaltReason,
  pendingFlatten,
  tradingStateHistory,
  tradingStates,
} from "../lib/control/trading_state.ts";
import { startUpbot, type Upbot } from "../lib/upbot.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";
import { openTestDatabase, testBackends } from "./_db.ts";
import { captureLog, type Cleanups, FAST_SUPERVISOR } from "./_fault_rig.ts";
import { spawnDeno } from "../lib/subprocess.ts";

const DENO_JSON = new URL("../deno.json", import.meta.url).pathname;
const MARKETS = ["KRW-BTC", "KRW-ETH"];

/** Where one upbot keeps its data, kept across restarts. */
interface Site {
  dataDir: string;
  env: Record<string, string>;
  sim: Simulator;
  lines: string[];
  start(supervisor?: Partial<UpbotSupervisorOptions>): Promise<Upbot>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function openSite(backend: string): Promise<Site> {
  const cleanups: Cleanups = [];
  const cleanUp = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    const log = captureLog();
    const lines = log.lines;
    cleanups.push(log.restore);
    const sim = await startSimulator({ seed: 5, markets: MARKETS, rate: 20 });
    cleanups.push(() => sim.close());
    const dataDir = await Deno.makeTempDir({ prefix: "upbot_control_e2e_" });
    cleanups.push(() => Deno.remove(dataDir, { recursive: true }));
    const env: Record<string, string> = { DATA_DIR: dataDir };
    if (backend !== "pglite") {
      const db = await openTestDatabase(backend);
      cleanups.push(() => db.close());
      assert.equal(db.connection.kind, "url");
      if (db.connection.kind === "url") env.DATABASE_URL = db.connection.url;
    }
    const upbots: Upbot[] = [];
    cleanups.push(async () => {
      for (const u of upbots) await u.stop();
    });
    return {
      dataDir,
      env,
      sim,
      lines,
      async start(supervisor = {}) {
        const config = parseConfig({
          HTTP_PORT: "0",
          LOG_LEVEL: "info",
          LOG_FORMAT: "json",
          MARKETS: MARKETS.join(","),
          UPBIT_REST_URL: sim.restUrl,
          UPBIT_WS_URL: sim.wsUrl,
          UPBIT_TRADE_MODE: "shadow",
          ...env,
        });
        const upbot = await startUpbot(config, {
          supervisor: {
            log: { level: "error", format: "json" },
            ...FAST_SUPERVISOR,
            ...supervisor,
          },
        });
        upbots.push(upbot);
        return upbot;
      },
      [Symbol.asyncDispose]: cleanUp,
    };
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

/** Runs `deno task <args>` as its own process with only the site's `DATA_DIR`. */
async function task(site: Site, args: string[]) {
  const proc = spawnDeno(["task", "--quiet", "--config", DENO_JSON, ...args], {
    env: { DATA_DIR: site.dataDir, LOG_FORMAT: "json", MARKETS: MARKETS.join(",") },
  });
  const status = await proc.exited();
  return { code: status.code, text: proc.lines.join("\n") };
}

/** Waits (polling every 100 ms) until `check` holds; fails saying `what` after `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

for (const backend of testBackends()) {
  Deno.test(`deno task halt, resume and flatten act on a running upbot [${backend}]`, async () => {
    await using site = await openSite(backend);
    let upbot = await site.start();

    const halted = await task(site, ["halt", "--reason", "x", "--market", "KRW-BTC"]);
    assert.equal(halted.code, 0, halted.text);
    assert.match(halted.text, /New entries halted on KRW-BTC \(exits go on\): x/);
    assert.match(halted.text, /KRW-BTC: entries HALTED since .+ by cli: x/);
    // Acknowledged means applied: the state is in the database now.
    assert.match((await entryHaltReason(upbot.sql, "KRW-BTC"))!, /halted by cli .+: x$/);
    assert.equal(await entryHaltReason(upbot.sql, "KRW-ETH"), null);
    assert.ok(site.lines.some((l) => l.includes("New entries halted on KRW-BTC")));

    const resumed = await task(site, ["resume", "--market", "KRW-BTC"]);
    assert.equal(resumed.code, 0, resumed.text);
    assert.equal(await entryHaltReason(upbot.sql, "KRW-BTC"), null);

    const flattened = await task(site, ["flatten", "--reason", "y"]);
    assert.equal(flattened.code, 0, flattened.text);
    const pending = await pendingFlatten(upbot.sql);
    assert.equal(pending?.reason, "y");
    assert.match(flattened.text, new RegExp(`Flatten requested \\(#${pending!.id}\\)`));
    assert.match((await entryHaltReason(upbot.sql, "KRW-ETH"))!, /halted globally by cli/);

    // Shadow mode runs no closer: with nothing live to close, the resume completes the flatten.
    const resumedAll = await task(site, ["resume"]);
    assert.equal(resumedAll.code, 0, resumedAll.text);
    assert.equal(await entryHaltReason(upbot.sql, "KRW-ETH"), null);
    assert.equal(await pendingFlatten(upbot.sql), null);

    const bad = await task(site, ["halt", "--market", "KRW-BTC"]);
    assert.equal(bad.code, 2, bad.text);
    assert.match(bad.text, /halt needs --reason/);

    // With no upbot running the command stays queued, says so, and applies at the next start.
    await upbot.stop();
    const queued = await task(site, ["halt", "--reason", "while down", "--market", "KRW-ETH"]);
    assert.equal(queued.code, 1, queued.text);
    assert.match(queued.text, /no running upbot acknowledged the halt within 5 s/);
    assert.match(queued.text, /stays queued in .+ and is applied when upbot next starts/);
    upbot = await site.start();
    assert.match((await entryHaltReason(upbot.sql, "KRW-ETH"))!, /halted by cli .+: while down$/);
    assert.equal(await entryHaltReason(upbot.sql, "KRW-BTC"), null);
    assert.deepEqual(
      (await tradingStateHistory(upbot.sql)).reverse().map((h) => [h.scope, h.action]),
      [
        ["KRW-BTC", "halt"],
        ["KRW-BTC", "resume"],
        ["global", "halt"],
        ["global", "flatten_requested"],
        ["global", "flatten_completed"],
        ["global", "resume"],
        ["KRW-ETH", "halt"],
      ],
    );
  });

  Deno.test(`a critical actor failing for good stores a global entry halt [${backend}]`, async () => {
    await using site = await openSite(backend);
    // A stand-in executor that crashes when a control command wakes it; no restarts allowed.
    const upbot = await site.start({
      actors: [{
        name: "executor",
        module: new URL("./fixtures/actors/echo.ts", import.meta.url),
        critical: true,
        config: { crashOnTopic: "trading_state" },
      }],
      maxRestarts: 0,
    });
    await enqueueControlCommand(
      controlDirLayout(site.dataDir),
      newControlCommand({ action: "halt", scope: "KRW-BTC", reason: "wake it" }),
    );
    await until("the supervisor's halt is stored", async () => {
      const global = (await tradingStates(upbot.sql)).find((s) => s.scope === "global");
      return global?.halted === true;
    });
    assert.equal(upbot.supervisor.health().tradingState, "halted");
    const [global] = await tradingStates(upbot.sql);
    assert.equal(global?.by, "supervisor");
    assert.match(global!.reason!, /^critical actor executor failed: /);
    assert.match((await entryHaltReason(upbot.sql, "KRW-ETH"))!, /halted globally by supervisor/);
  });
}
