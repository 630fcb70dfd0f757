/**
 * @module Start-up time and resident memory of the whole upbot process (main thread, PGlite and
 * every actor's Worker share one process, so `/proc/<pid>/status` VmRSS covers them all), run as
 * a user would: `main.ts` in a subprocess against the simulator (in its own process), shadow mode,
 * warm dependency cache.
 *
 * - start-up: from spawning the process until `/healthz` answers 200 and every actor is `running`
 *   (PostgreSQL, a new PGlite data directory, the same directory again);
 * - memory at rest: 10 s after start-up, the simulator trading 10 trades/s;
 * - memory under load: after 15 s at 20,000 trades/s over 10 markets (the highest of 3 samples).
 *
 * Usage: deno run -A bench/memory_startup.ts [startup [--rounds N] [--compare DIR] [--timeline]]
 * (`startup`: start-up times only: each round a new PGlite directory, the same one again and, when
 * a PostgreSQL server is configured, an already migrated database; with the resident memory right
 * after the new directory's start. `--compare DIR` runs DIR's main.ts (another checkout, e.g.
 * `git worktree add /tmp/before HEAD~1`) too, alternating with this one round by round.
 * `--timeline` logs at `info` and prints each start's log lines with the ms since the spawn at
 * which each arrived: where a start-up goes.)
 */
import { join } from "node:path";
import postgres from "postgres";
import {
  benchDatabaseUrl,
  cpuTimeUs,
  createBenchDatabase,
  out,
  rssMb,
  type SimProcess,
  sleep,
  startSimProcess,
  TEN_MARKETS,
} from "./_harness.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * The arguments of `deno task start` (deno.json), with `--cached-only` added; `v8Flags`, when
 * given, replaces its `--v8-flags` ("" for none).
 */
export function startTaskArgs(v8Flags?: string, root = ROOT): string[] {
  const tasks = JSON.parse(Deno.readTextFileSync(join(root, "deno.json"))).tasks as Record<
    string,
    string
  >;
  const words = tasks.start!.split(/\s+/);
  if (words[0] !== "deno" || words[1] !== "run") {
    throw new Error(`deno.json's start task is not a 'deno run': ${tasks.start}`);
  }
  let args = ["run", "--cached-only", ...words.slice(2)];
  if (v8Flags !== undefined) {
    args = args.filter((a) => !a.startsWith("--v8-flags="));
    if (v8Flags) args.splice(1, 0, `--v8-flags=${v8Flags}`);
  }
  return args;
}

/** A running upbot subprocess. */
export interface UpbotProcess {
  pid: number;
  /** Its HTTP server, e.g. `http://127.0.0.1:1234`. */
  base: string;
  /** ms from spawn until /healthz 200 and every actor running. */
  startupMs: number;
  /** CPU time (user + system, all threads) the process had used by then, ms. */
  cpuMs: number;
  /** With `timeline`: upbot's log lines until then, each with its ms since the spawn. */
  timeline: TimelineLine[];
  stop(): Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Options of {@linkcode startUpbotProcess}. */
export interface StartOptions {
  /** Where upbot's stderr goes. @default {"null"} */
  stderr?: "null" | "inherit";
  /** Replaces the `--v8-flags` of `deno task start` ("" for none), for comparisons. */
  v8Flags?: string;
  /** Another checkout of upbot to run (e.g. the code before a change). @default {this one} */
  root?: string;
  /**
   * Logs at `info` and keeps each line with the time it arrived (stdout is read as it comes; the
   * reading itself costs the process nothing it would not spend writing to a terminal).
   */
  timeline?: boolean;
}

/** One log line of a start-up, as `startUpbotProcess` received it. */
export interface TimelineLine {
  /** ms since the spawn. */
  ms: number;
  actor: string;
  msg: string;
}

/**
 * Starts `main.ts` as `deno task start` does (plus `--cached-only`) against `sim`, and waits
 * until `/healthz` answers and every actor is running.
 */
export async function startUpbotProcess(
  sim: SimProcess,
  db: { DATA_DIR: string; DATABASE_URL?: string },
  options: StartOptions = {},
): Promise<UpbotProcess> {
  const root = options.root ?? ROOT;
  const port = freePort();
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: Deno.env.get("HOME") ?? "",
    HTTP_PORT: String(port),
    LOG_LEVEL: options.timeline ? "info" : "warn",
    LOG_FORMAT: "json",
    MARKETS: TEN_MARKETS.join(","),
    UPBIT_REST_URL: sim.restUrl,
    UPBIT_WS_URL: sim.wsUrl,
    UPBIT_ACCESS_KEY: sim.accessKey,
    UPBIT_SECRET_KEY: sim.secretKey,
    ...db,
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir;
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: startTaskArgs(options.v8Flags, root),
    cwd: root,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: options.timeline ? "piped" : "null",
    stderr: options.stderr ?? "null",
  }).spawn();
  const timeline: TimelineLine[] = [];
  if (options.timeline) void readTimeline(child.stdout, t0, timeline);
  const base = `http://127.0.0.1:${port}`;
  let seen = "nothing";
  const exited: { code?: number } = {};
  void child.status.then((status) => (exited.code = status.code));
  for (;;) {
    if (exited.code !== undefined) {
      throw new Error(`upbot exited during start-up (code ${exited.code}); last seen: ${seen}`);
    }
    if (performance.now() - t0 > 120_000) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`upbot did not start within 120 s; last seen: ${seen}`);
    }
    try {
      const health = await fetch(`${base}/healthz`);
      await health.body?.cancel();
      if (health.ok) {
        const actors = await (await fetch(`${base}/api/actors`)).json() as {
          name: string;
          state: string;
          lastError: string | null;
        }[];
        seen = JSON.stringify(actors.map((a) => [a.name, a.state, a.lastError]));
        if (actors.length === 5 && actors.every((a) => a.state === "running")) break;
      }
    } catch { /* not listening yet */ }
    await sleep(20);
  }
  const startupMs = performance.now() - t0;
  const cpuMs = cpuTimeUs(child.pid) / 1000;
  return {
    pid: child.pid,
    base,
    startupMs,
    cpuMs,
    timeline: timeline.filter((line) => line.ms <= startupMs),
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/** Reads JSON log lines from `stdout` into `into` as they arrive, until the stream ends. */
async function readTimeline(
  stdout: ReadableStream<Uint8Array>,
  t0: number,
  into: TimelineLine[],
): Promise<void> {
  let pending = "";
  for await (const chunk of stdout.pipeThrough(new TextDecoderStream())) {
    const ms = performance.now() - t0;
    const lines = (pending + chunk).split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      try {
        const { actor, msg } = JSON.parse(line) as { actor?: string; msg?: string };
        into.push({ ms, actor: actor ?? "?", msg: msg ?? line });
      } catch {
        into.push({ ms, actor: "?", msg: line });
      }
    }
  }
}

/** Everything this part measures. */
export interface MemoryStartupFigures {
  startupMs: { postgres?: number; pgliteNew: number; pgliteExisting: number };
  restMb: { postgres?: number; pglite: number };
  loadMb: { postgres?: number; pglite: number };
}

/** The highest VmRSS (MB) of `samples` samples `everyMs` apart. */
export async function maxRss(pid: number, samples: number, everyMs: number): Promise<number> {
  let max = 0;
  for (let i = 0; i < samples; i++) {
    max = Math.max(max, rssMb(pid));
    await sleep(everyMs);
  }
  return max;
}

/** Runs every measurement; PostgreSQL ones only when a server is configured. */
export async function benchMemoryStartup(): Promise<MemoryStartupFigures> {
  const dir = await Deno.makeTempDir({ prefix: "upbot_bench_mem_" });
  const adminUrl = benchDatabaseUrl();
  let admin: postgres.Sql | undefined;
  let pgUrl: string | undefined;
  if (adminUrl) {
    admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    const created = await createBenchDatabase(admin, adminUrl);
    pgUrl = created.url;
  }
  const figures: MemoryStartupFigures = {
    startupMs: { pgliteNew: NaN, pgliteExisting: NaN },
    restMb: { pglite: NaN },
    loadMb: { pglite: NaN },
  };
  try {
    const quiet = await startSimProcess({ rate: 10 });
    try {
      // PGlite: a new data directory, then the same one again (measured at rest too).
      const first = await startUpbotProcess(quiet, { DATA_DIR: `${dir}/pglite` });
      figures.startupMs.pgliteNew = first.startupMs;
      await first.stop();
      const again = await startUpbotProcess(quiet, { DATA_DIR: `${dir}/pglite` });
      figures.startupMs.pgliteExisting = again.startupMs;
      await sleep(10_000);
      figures.restMb.pglite = await maxRss(again.pid, 3, 500);
      await again.stop();
      if (pgUrl) {
        // The first start migrates; the second is the one measured, like an existing PGlite.
        const migrating = await startUpbotProcess(quiet, {
          DATA_DIR: `${dir}/pg-control`,
          DATABASE_URL: pgUrl,
        });
        await migrating.stop();
        const pg = await startUpbotProcess(quiet, {
          DATA_DIR: `${dir}/pg-control`,
          DATABASE_URL: pgUrl,
        });
        figures.startupMs.postgres = pg.startupMs;
        await sleep(10_000);
        figures.restMb.postgres = await maxRss(pg.pid, 3, 500);
        await pg.stop();
      }
    } finally {
      await quiet.close();
    }
    const busy = await startSimProcess({ rate: 20_000 });
    try {
      // New data: an existing one would first backfill every trade since its last bar.
      const loaded = await startUpbotProcess(busy, { DATA_DIR: `${dir}/pglite-load` });
      await sleep(15_000);
      figures.loadMb.pglite = await maxRss(loaded.pid, 3, 1000);
      await loaded.stop();
      if (pgUrl) {
        const db = postgres(pgUrl, { max: 1, onnotice: () => {} });
        await db`truncate market_1s`;
        await db.end({ timeout: 5 });
        const pg = await startUpbotProcess(busy, {
          DATA_DIR: `${dir}/pg-control`,
          DATABASE_URL: pgUrl,
        });
        await sleep(15_000);
        figures.loadMb.postgres = await maxRss(pg.pid, 3, 1000);
        await pg.stop();
      }
    } finally {
      await busy.close();
    }
  } finally {
    if (admin && pgUrl) {
      await admin.unsafe(
        `drop database if exists ${new URL(pgUrl).pathname.slice(1)} with (force)`,
      );
      await admin.end({ timeout: 5 });
    }
    await Deno.remove(dir, { recursive: true });
  }
  return figures;
}

/** One start-up round of one checkout. */
export interface StartupRound {
  /** Which main.ts: `this` or the compared checkout's directory. */
  variant: string;
  /** ms: a new PGlite data directory, the same again, an already migrated PostgreSQL database. */
  new: number;
  existing: number;
  postgres?: number;
  /** MB resident right after the new directory's start-up. */
  newRssMb: number;
}

/**
 * Start-up times, `rounds` times each of `roots` (checkouts of upbot), alternating: a new
 * PGlite directory, the same one again and, when a server is configured, PostgreSQL.
 */
export async function benchStartup(
  rounds: number,
  roots: { variant: string; root: string }[] = [{ variant: "this", root: ROOT }],
  options: { timeline?: boolean } = {},
): Promise<StartupRound[]> {
  const timeline = options.timeline ?? false;
  /** Prints a start's log lines with their times (`--timeline`). */
  const show = (variant: string, what: string, started: UpbotProcess) => {
    if (!timeline) return;
    const lines = started.timeline.map((l) =>
      `  ${l.ms.toFixed(0).padStart(5)} ms  ${l.actor.padEnd(12)} ${l.msg}`
    );
    out(
      `${variant}, ${what}: ready at ${started.startupMs.toFixed(0)} ms, ${
        started.cpuMs.toFixed(0)
      } ms of CPU used by then\n${lines.join("\n")}`,
    );
  };
  const sim = await startSimProcess({ rate: 10 });
  const adminUrl = benchDatabaseUrl();
  const admin = adminUrl ? postgres(adminUrl, { max: 1, onnotice: () => {} }) : undefined;
  const created: string[] = [];
  const measured: StartupRound[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      for (const { variant, root } of roots) {
        const dir = await Deno.makeTempDir({ prefix: "upbot_bench_start_" });
        try {
          const first = await startUpbotProcess(sim, { DATA_DIR: dir }, {
            stderr: "inherit",
            root,
            timeline,
          });
          const newRssMb = rssMb(first.pid);
          await first.stop();
          show(variant, "new PGlite", first);
          const again = await startUpbotProcess(sim, { DATA_DIR: dir }, {
            stderr: "inherit",
            root,
            timeline,
          });
          await again.stop();
          show(variant, "existing PGlite", again);
          const round: StartupRound = {
            variant,
            new: Math.round(first.startupMs),
            existing: Math.round(again.startupMs),
            newRssMb: Math.round(newRssMb),
          };
          if (admin && adminUrl) {
            const fresh = await createBenchDatabase(admin, adminUrl);
            created.push(fresh.name);
            const db = { DATA_DIR: `${dir}/pg-control`, DATABASE_URL: fresh.url };
            await (await startUpbotProcess(sim, db, { stderr: "inherit", root })).stop(); // migrates
            const pg = await startUpbotProcess(sim, db, { stderr: "inherit", root, timeline });
            await pg.stop();
            show(variant, "PostgreSQL", pg);
            round.postgres = Math.round(pg.startupMs);
          }
          measured.push(round);
          Deno.stderr.writeSync(new TextEncoder().encode(JSON.stringify(round) + "\n"));
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      }
    }
  } finally {
    for (const name of created) {
      await admin?.unsafe(`drop database if exists ${name} with (force)`);
    }
    await admin?.end({ timeout: 5 });
    await sim.close();
  }
  return measured;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
}

if (import.meta.main && Deno.args[0] === "startup") {
  const arg = (name: string) => {
    const i = Deno.args.indexOf(name);
    return i === -1 ? undefined : Deno.args[i + 1];
  };
  const rounds = Number(arg("--rounds") ?? 3);
  const other = arg("--compare");
  const roots = [{ variant: "this", root: ROOT }];
  if (other) roots.unshift({ variant: other, root: other });
  const results = await benchStartup(rounds, roots, { timeline: Deno.args.includes("--timeline") });
  const lines = roots.map(({ variant }) => {
    const mine = results.filter((r) => r.variant === variant);
    const col = (key: "new" | "existing" | "postgres" | "newRssMb") =>
      mine.map((r) => r[key] ?? NaN).join(" / ") +
      ` (median ${median(mine.map((r) => r[key] ?? NaN))})`;
    return `${variant}: new PGlite ms ${col("new")}; existing PGlite ms ${
      col("existing")
    }; PostgreSQL ms ${col("postgres")}; RSS after a new directory's start MB ${col("newRssMb")}`;
  });
  Deno.stdout.writeSync(new TextEncoder().encode(lines.join("\n") + "\n"));
} else if (import.meta.main) {
  Deno.stdout.writeSync(
    new TextEncoder().encode(JSON.stringify(await benchMemoryStartup(), null, 2) + "\n"),
  );
}
