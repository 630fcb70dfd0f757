/**
 * Database faults under a running upbot (issue #14, item 3), on a throwaway PostgreSQL cluster of
 * the test's own (initdb + pg_ctl as the `postgres` OS user, trust auth, a free port): upbot's
 * actor connections are cut again and again (`pg_terminate_backend`, mid-transaction when one is
 * open), then the server is stopped for a while and started again, then restarted
 * (`pg_ctl restart`, what `pg_ctlcluster 15 main restart` does on a Debian cluster). upbot keeps
 * running (losing its hot-standby lease, it stops its actors, stands by and leads again once it
 * can take the lease), `/readyz` says the database is unreachable while it is down and recovers,
 * trading goes on, and at the end the database agrees with the exchange: no paper trade or attempt lost
 * or doubled (lib/chaos/checks.ts).
 *
 * The shared PostgreSQL at 127.0.0.1:5432 is never touched. Skipped when the PostgreSQL 15
 * server binaries are missing.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { formatCheckTable } from "../lib/chaos/checks.ts";
import {
  checkAgainstExchange,
  flattenAndSettle,
  liveUpbotEnv,
  MARKETS,
  OWNER_COINS,
} from "../lib/chaos/crash_suite.ts";
import { startSimulator } from "../sim/mod.ts";
import { freePort, spawnDeno } from "../lib/subprocess.ts";
import { waitFor } from "./_upbot_rig.ts";

const PG_BIN = "/usr/lib/postgresql/15/bin";
const REPO = new URL("../", import.meta.url).pathname;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const missing = [`${PG_BIN}/initdb`, `${PG_BIN}/pg_ctl`].filter((p) => !exists(p));

/** Runs a PostgreSQL binary as the `postgres` user (initdb refuses root); throws on failure. */
async function pgRun(binary: string, args: string[]): Promise<void> {
  const asRoot = Deno.uid() === 0;
  const out = await new Deno.Command(asRoot ? "runuser" : `${PG_BIN}/${binary}`, {
    args: asRoot ? ["-u", "postgres", "--", `${PG_BIN}/${binary}`, ...args] : args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    throw new Error(`${binary} ${args.join(" ")} failed (${out.code}):\n${text}`);
  }
}

/** A PostgreSQL cluster in a temp dir, on a free port, removed by dispose. */
async function startCluster() {
  const root = await Deno.makeTempDir({ prefix: "upbot_pg_" });
  if (Deno.uid() === 0) {
    const chown = await new Deno.Command("chown", { args: ["postgres:postgres", root] }).output();
    assert.ok(chown.success, "chown of the cluster dir to postgres failed");
  }
  const dir = `${root}/pg`;
  const port = freePort();
  const options = `-p ${port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off`;
  const ctl = (action: string, ...extra: string[]) =>
    pgRun("pg_ctl", ["-D", dir, "-o", options, "-l", `${root}/server.log`, "-w", ...extra, action]);
  await pgRun("initdb", [
    "-D",
    dir,
    "--auth=trust",
    "--username=postgres",
    "--no-sync",
    "-E",
    "UTF8",
  ]);
  await ctl("start");
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: () => ctl("stop", "-m", "fast"),
    start: () => ctl("start"),
    restart: () => ctl("restart", "-m", "fast"),
    async [Symbol.asyncDispose]() {
      await ctl("stop", "-m", "immediate").catch(() => {});
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test({
  name: missing.length
    ? `database faults (skipped: ${missing.join(", ")} not found; install postgresql-15)`
    : "database faults: cut connections and a PostgreSQL restart lose and double nothing",
  ignore: missing.length > 0,
  async fn() {
    await using cluster = await startCluster();
    const sim = await startSimulator({
      seed: 21,
      markets: MARKETS,
      rate: 30,
      volatilityScale: 4,
      historyDays: 0,
      balances: OWNER_COINS,
    });
    await using _sim = { [Symbol.asyncDispose]: () => sim.close() };
    const dataDir = await Deno.makeTempDir({ prefix: "upbot_db_faults_" });
    const dataDir2 = await Deno.makeTempDir({ prefix: "upbot_db_faults_second_" });
    const admin = postgres(cluster.url, {
      max: 1,
      onnotice: () => {},
      connection: { application_name: "db-faults-test" },
    });
    const httpPort = freePort();
    const api = `http://127.0.0.1:${httpPort}`;
    const upbot = spawnDeno(["run", "--unstable-worker-options", "--allow-all", "main.ts"], {
      cwd: REPO,
      env: liveUpbotEnv({
        httpPort,
        dataDir,
        databaseUrl: cluster.url,
        restUrl: sim.restUrl,
        wsUrl: sim.wsUrl,
        accessKey: sim.accessKey,
        secretKey: sim.secretKey,
      }),
    });
    let exitedEarly = false;
    const exited = upbot.exited().then((status) => {
      exitedEarly = true;
      return status;
    });
    const attempts = async () =>
      Number((await admin`select count(*)::int as n from upbit_order_attempts`)[0]!.n);
    const readyz = async () => {
      const res = await fetch(`${api}/readyz`);
      return { status: res.status, body: await res.json() as { problems: string[] } };
    };
    /** Waits until upbot has written more attempts than `before` (it trades on). */
    const tradesOn = async (what: string, before: number) => {
      await waitFor(what, async () => !exitedEarly && (await attempts()) > before, 90_000);
    };
    try {
      await upbot.waitForLine(/HTTP server listening/, 90_000);
      await waitFor("/readyz 200", async () => (await readyz()).status === 200, 90_000);
      await tradesOn("first attempts", 0);

      // Connections cut while the actors work (mid-transaction when one is open).
      let cut = 0;
      for (let round = 0; round < 6; round++) {
        const rows = await admin`
          select pg_terminate_backend(pid) as killed from pg_stat_activity
          where application_name like 'upbot-%'`;
        cut += rows.filter((r) => r.killed).length;
        await new Promise((resolve) => setTimeout(resolve, 1_500));
      }
      assert.ok(cut > 0, "no upbot actor connection was found to cut");
      assert.equal(
        exitedEarly,
        false,
        `upbot ended after its connections were cut:\n${upbot.lines.slice(-20).join("\n")}`,
      );
      await tradesOn("attempts after the cuts", await attempts());

      // The server stopped for a while: /readyz shows the outage, then the recovery.
      const beforeOutage = await attempts();
      await admin.end({ timeout: 1 });
      await cluster.stop();
      const down = await waitFor("/readyz 503 during the outage", async () => {
        const r = await readyz();
        return r.status === 503 &&
            r.body.problems.some((p) => p.startsWith("database is unreachable"))
          ? r
          : undefined;
      }, 30_000);
      assert.equal((await fetch(`${api}/healthz`)).status, 503);
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      await cluster.start();
      await waitFor(
        "/readyz 200 after the outage",
        async () => (await readyz()).status === 200,
        90_000,
      );
      assert.ok(down.body.problems.length > 0);
      const admin2 = postgres(cluster.url, { max: 1, onnotice: () => {} });
      try {
        const count = async () =>
          Number((await admin2`select count(*)::int as n from upbit_order_attempts`)[0]!.n);
        await waitFor(
          "attempts after the outage",
          async () => (await count()) > beforeOutage,
          90_000,
        );
        // A plain restart (pg_ctlcluster ... restart).
        const beforeRestart = await count();
        await cluster.restart();
        await waitFor(
          "attempts after the restart",
          async () => !exitedEarly && (await count().catch(() => 0)) > beforeRestart,
          90_000,
        );
      } finally {
        await admin2.end({ timeout: 1 });
      }
      assert.equal(exitedEarly, false);
      // The restart ended upbot's lease session: its actors stopped, it stood by in the same
      // process and led again at a new epoch (only a leader writes attempts).
      const log = upbot.lines.join("\n");
      assert.match(log, /Lease LOST: stopping the trading actors/);
      assert.match(log, /Lease acquired \(epoch \d+\): this upbot takes over as leader/);
      // upbot holds the lease again: a second upbot on the database waits as a standby.
      const second = spawnDeno(["run", "--unstable-worker-options", "--allow-all", "main.ts"], {
        cwd: REPO,
        env: { DATABASE_URL: cluster.url, DATA_DIR: dataDir2, HTTP_PORT: "0", LOG_FORMAT: "json" },
      });
      try {
        await waitFor(
          "the second upbot to wait as standby",
          () => second.lines.some((l) => l.includes("Standby:")),
          60_000,
        ).catch((err) => {
          throw new Error(
            `${err.message}\nsecond upbot:\n${second.lines.join("\n")}\nfirst upbot, last lines:\n${
              upbot.lines.slice(-30).join("\n")
            }`,
          );
        });
      } finally {
        await second.stop("SIGTERM");
      }

      assert.ok(
        await flattenAndSettle(dataDir, api, sim.restUrl, 90_000),
        `upbot did not settle:\n${upbot.lines.slice(-20).join("\n")}`,
      );
      const status = await upbot.stop("SIGTERM");
      assert.equal(status.code, 0);
      const results = await checkAgainstExchange({
        restUrl: sim.restUrl,
        accessKey: sim.accessKey,
        secretKey: sim.secretKey,
        dataDir,
        databaseUrl: cluster.url,
      });
      assert.ok(results.every((r) => r.ok), formatCheckTable(results));
    } finally {
      await upbot.stop("SIGKILL");
      await exited;
      await admin.end({ timeout: 1 }).catch(() => {});
      await Deno.remove(dataDir, { recursive: true });
      await Deno.remove(dataDir2, { recursive: true });
    }
  },
});
