/**
 * @module Resident memory of the whole upbot process under several variants, measured side by
 * side: each round runs every variant in turn (A B C A B C ...), so the machine's noise falls on
 * all of them alike. A variant is a set of V8 flags and/or another checkout of upbot (the code
 * before a change, e.g. `git worktree add /tmp/before HEAD~1`).
 *
 * Per variant and round: at rest on PostgreSQL (when `BENCH_DATABASE_URL` or `TEST_DATABASE_URL`
 * is set) and on an existing PGlite directory, 10 s after start-up with the simulator at 10
 * trades/s; under load on a new PGlite directory after 15 s at 20,000 trades/s over 10 markets
 * (the highest of 3 samples, as `bench/memory_startup.ts`). Also the anonymous part of the RSS
 * (heaps, WebAssembly memory) and the feed's stored rate (so a flag that saves memory but slows
 * ingest shows). `--at` samples each process again at later times (memory over time: whether it
 * settles or keeps growing), with the feed isolate's committed heap under load. Prints a table;
 * asserts nothing.
 *
 * Usage: deno run -A bench/memory_variants.ts [--rounds N] [--parts rest,load] [--at S,S...]
 *        VARIANT...
 * where VARIANT is `name=V8FLAGS` (`name=` for none; V8FLAGS comma-separated as for
 * `--v8-flags`), `name` alone (the flags of `deno task start`), or either with `@ROOT` after
 * the name to run the checkout at ROOT; `--at 10,60,240`: seconds after start-up at which to
 * sample (default 10 at rest, 15 under load). Example:
 *   deno run -A bench/memory_variants.ts none= semi1=--max-semi-space-size=1
 */
import postgres from "postgres";
import {
  benchDatabaseUrl,
  createBenchDatabase,
  out,
  type SimProcess,
  sleep,
  startSimProcess,
} from "./_harness.ts";
import { maxRss, startUpbotProcess, type UpbotProcess } from "./memory_startup.ts";

/** One variant to compare. */
export interface Variant {
  name: string;
  /** undefined: the flags of `deno task start`. */
  v8Flags?: string;
  root?: string;
}

/** Parses `name[@root][=flags]`. */
export function parseVariant(arg: string): Variant {
  const eq = arg.indexOf("=");
  const head = eq < 0 ? arg : arg.slice(0, eq);
  const at = head.indexOf("@");
  return {
    name: at < 0 ? head : head.slice(0, at),
    ...(at < 0 ? {} : { root: head.slice(at + 1) }),
    ...(eq < 0 ? {} : { v8Flags: arg.slice(eq + 1) }),
  };
}

/** RSS and its anonymous part of a process, in MB, from /proc/<pid>/smaps_rollup. */
function rssParts(pid: number): { rss: number; anon: number } {
  const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)![1]);
  return { rss: kb("Rss") / 1024, anon: kb("Anonymous") / 1024 };
}

/** The feed actor's counters and its isolate's committed heap (MB) from `/api/actors`. */
async function feedMetrics(proc: UpbotProcess): Promise<Record<string, number>> {
  const actors = await (await fetch(`${proc.base}/api/actors`)).json() as {
    name: string;
    metrics?: Record<string, number>;
    memory?: { heapTotal: number } | null;
  }[];
  const feed = actors.find((a) => a.name === "feed");
  return { ...feed?.metrics, heapMb: (feed?.memory?.heapTotal ?? NaN) / 1048576 };
}

/** CPU time (user + system) a process used so far, in ms, from /proc/<pid>/stat. */
function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

type Sample = {
  rss: number;
  anon: number;
  /** Under load: the feed isolate's committed V8 heap (MB, from its last heartbeat). */
  feedHeap?: number;
  rate?: number;
  cpuUsPerTrade?: number;
  trouble?: number;
};

/**
 * Waits `waitMs`, then samples. Under load, also the trades the feed received per second over
 * the sampling and its late, duplicate and failed writes since start (`trouble`).
 */
async function measure(proc: UpbotProcess, waitMs: number, load: boolean): Promise<Sample> {
  await sleep(waitMs);
  const t0 = performance.now();
  const c0 = cpuMs(proc.pid);
  const m0 = load ? await feedMetrics(proc) : {};
  let anon = 0;
  for (let i = 0; i < 3; i++) {
    anon = Math.max(anon, rssParts(proc.pid).anon);
    await sleep(300);
  }
  const rss = await maxRss(proc.pid, 3, load ? 1000 : 500);
  if (!load) return { rss, anon };
  const m1 = await feedMetrics(proc);
  const trades = (m1.trades ?? 0) - (m0.trades ?? 0);
  return {
    rss,
    anon,
    feedHeap: m1.heapMb,
    rate: trades / ((performance.now() - t0) / 1000),
    cpuUsPerTrade: ((cpuMs(proc.pid) - c0) * 1000) / Math.max(trades, 1),
    trouble: (m1.lateDropped ?? 0) + (m1.duplicates ?? 0) + (m1.writeErrors ?? 0),
  };
}

/**
 * Samples `proc` at each of `atSec` (seconds after its start-up, ascending), as
 * {@linkcode measure} does; returns each sample with its time.
 */
async function measureAt(
  proc: UpbotProcess,
  atSec: number[],
  load: boolean,
): Promise<{ at: number; sample: Sample }[]> {
  const started = performance.now();
  const samples: { at: number; sample: Sample }[] = [];
  for (const at of atSec) {
    const waitMs = Math.max(0, at * 1000 - (performance.now() - started));
    samples.push({ at, sample: await measure(proc, waitMs, load) });
  }
  return samples;
}

async function main(): Promise<void> {
  const args = [...Deno.args];
  let rounds = 2;
  let parts = new Set(["rest", "load"]);
  let atSec: number[] | undefined;
  const variants: Variant[] = [];
  while (args.length > 0) {
    const a = args.shift()!;
    if (a === "--rounds") rounds = Number(args.shift());
    else if (a === "--parts") parts = new Set(args.shift()!.split(","));
    else if (a === "--at") atSec = args.shift()!.split(",").map(Number);
    else variants.push(parseVariant(a));
  }
  if (
    atSec && (atSec.some((t) => !(t > 0)) || atSec.some((t, i) => i > 0 && t <= atSec![i - 1]!))
  ) {
    throw new Error(`--at wants rising positive seconds, e.g. 10,60,240; got ${atSec.join(",")}`);
  }
  if (variants.length === 0) variants.push({ name: "start" });
  const dir = await Deno.makeTempDir({ prefix: "upbot_bench_var_" });
  const adminUrl = benchDatabaseUrl();
  let admin: postgres.Sql | undefined;
  let pgUrl: string | undefined;
  if (adminUrl) {
    admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    const created = await createBenchDatabase(admin, adminUrl);
    pgUrl = created.url;
  }
  const results: Record<string, Record<string, Sample[]>> = {};
  /** Records each sample, under `part` alone or, with `--at`, `part @Ns`. */
  const recordAll = (variant: string, part: string, samples: { at: number; sample: Sample }[]) => {
    for (const { at, sample } of samples) record(variant, atSec ? `${part} @${at}s` : part, sample);
  };
  const record = (variant: string, part: string, s: Sample) => {
    ((results[variant] ??= {})[part] ??= []).push(s);
    out(
      `  ${variant.padEnd(14)} ${part.padEnd(12)} rss ${s.rss.toFixed(0)} MB, anon ${
        s.anon.toFixed(0)
      } MB${
        s.rate === undefined
          ? ""
          : `, feed heap ${s.feedHeap!.toFixed(0)} MB, feed ${s.rate.toFixed(0)} trades/s, ${
            s.cpuUsPerTrade!.toFixed(1)
          } µs CPU/trade, late+dup+write errors ${s.trouble}`
      }`,
    );
  };
  const run = (
    sim: SimProcess,
    v: Variant,
    db: { DATA_DIR: string; DATABASE_URL?: string },
  ) => startUpbotProcess(sim, db, { v8Flags: v.v8Flags, root: v.root });
  try {
    if (parts.has("rest")) {
      const quiet = await startSimProcess({ rate: 10 });
      try {
        // Create (and migrate) the shared databases once, outside the measurements.
        await (await run(quiet, variants[0]!, { DATA_DIR: `${dir}/pglite` })).stop();
        if (pgUrl) {
          await (await run(quiet, variants[0]!, { DATA_DIR: `${dir}/pg`, DATABASE_URL: pgUrl }))
            .stop();
        }
        for (let r = 0; r < rounds; r++) {
          out(`round ${r + 1} at rest`);
          for (const v of variants) {
            if (pgUrl) {
              const p = await run(quiet, v, { DATA_DIR: `${dir}/pg`, DATABASE_URL: pgUrl });
              recordAll(v.name, "rest pg", await measureAt(p, atSec ?? [10], false));
              await p.stop();
            }
            const p = await run(quiet, v, { DATA_DIR: `${dir}/pglite` });
            recordAll(v.name, "rest pglite", await measureAt(p, atSec ?? [10], false));
            await p.stop();
          }
        }
      } finally {
        await quiet.close();
      }
    }
    if (parts.has("load")) {
      for (let r = 0; r < rounds; r++) {
        out(`round ${r + 1} at 20,000 trades/s`);
        for (const v of variants) {
          // A fresh simulator per run: its trade ids and times start anew.
          const busy = await startSimProcess({ rate: 20_000 });
          const dataDir = `${dir}/load-${r}-${v.name}`;
          try {
            const p = await run(busy, v, { DATA_DIR: dataDir });
            recordAll(v.name, "load pglite", await measureAt(p, atSec ?? [15], true));
            await p.stop();
          } finally {
            await busy.close();
            await Deno.remove(dataDir, { recursive: true });
          }
        }
      }
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
  out("\nmedian over rounds (MB):");
  for (const [variant, byPart] of Object.entries(results)) {
    const cells = Object.entries(byPart).map(([part, samples]) => {
      const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
      const rate = samples.every((s) => s.rate !== undefined)
        ? `, feed ${med(samples.map((s) => s.rate!)).toFixed(0)}/s, ${
          med(samples.map((s) => s.cpuUsPerTrade!)).toFixed(1)
        } µs CPU/trade`
        : "";
      return `${part} ${med(samples.map((s) => s.rss)).toFixed(0)} (anon ${
        med(samples.map((s) => s.anon)).toFixed(0)
      }${rate})`;
    });
    out(`  ${variant.padEnd(14)} ${cells.join("; ")}`);
  }
}

if (import.meta.main) await main();
