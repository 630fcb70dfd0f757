/**
 * @module `deno task bench`: every figure of docs/benchmarks.md measured in one run, side by side
 * with its reference where one exists, printed as one table and written to docs/benchmarks.md
 * (numbers, machine, method, how to reproduce). PostgreSQL parts run when BENCH_DATABASE_URL or
 * TEST_DATABASE_URL names a server (a fresh database is created and dropped on it).
 *
 * Usage: deno task bench            (about 10 minutes)
 *        deno task bench --no-write (print only)
 */
import { configureLogging } from "../lib/log.ts";
import { benchDatabaseUrl, type BenchRow, fmt, out } from "./_harness.ts";
import { benchFeedIngest, describeStep, ingestRow, type IngestStep } from "./feed_ingest.ts";
import { benchMemoryStartup, type MemoryStartupFigures } from "./memory_startup.ts";
import { benchPgliteMemory } from "./pglite_memory.ts";
import { benchRestClient, restRows } from "./rest_client.ts";
import {
  benchDecisionToWire,
  describeWire,
  type WireFigures,
  wireRow,
} from "./decision_to_wire.ts";
import { benchReplay, replayRow } from "./backtest_replay.ts";

const DOC = new URL("../docs/benchmarks.md", import.meta.url);

function table(rows: BenchRow[]): string {
  const head = ["part", "measure", "upbot", "reference", "ratio", "target", "met"];
  const cells = rows.map((
    r,
  ) => [r.part, r.measure, r.upbot, r.reference, r.ratio, r.target, r.met]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}

async function machine(): Promise<string> {
  const cpu = /model name\s*:\s*(.+)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1] ??
    "unknown CPU";
  const memKb = Number(/MemTotal:\s+(\d+)/.exec(await Deno.readTextFile("/proc/meminfo"))?.[1]);
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  return `${cpu}, ${navigator.hardwareConcurrency} logical cores, ${
    fmt(memKb / 1048576, 1)
  } GB RAM, ${Deno.build.os} ${Deno.build.arch}, Deno ${Deno.version.deno} (V8 ${Deno.version.v8}); load average at the start ${load}`;
}

async function probe(dataDir: string): Promise<Record<string, number>> {
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./_memory_probe.ts", import.meta.url).pathname, dataDir],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return JSON.parse(new TextDecoder().decode(res.stdout).trim().split("\n").at(-1)!);
}

function memoryRows(m: MemoryStartupFigures): BenchRow[] {
  const rows: BenchRow[] = [];
  const ms = (v: number | undefined) => (v === undefined ? "not run" : `${fmt(v)} ms`);
  const mb = (v: number | undefined) => (v === undefined ? "not run" : `${fmt(v)} MB`);
  const met = (v: number | undefined, limit: number) =>
    v === undefined ? "-" : v <= limit ? "yes" as const : "no" as const;
  const row = (measure: string, value: string, target: string, ok: BenchRow["met"]): BenchRow => ({
    part: measure.startsWith("start") ? "start-up" : "memory",
    measure,
    upbot: value,
    reference: "-",
    ratio: "-",
    target,
    met: ok,
  });
  rows.push(
    row(
      "start-up, PostgreSQL",
      ms(m.startupMs.postgres),
      "<= 1,000 ms",
      met(m.startupMs.postgres, 1000),
    ),
  );
  rows.push(
    row(
      "start-up, existing PGlite",
      ms(m.startupMs.pgliteExisting),
      "<= 1,000 ms",
      met(m.startupMs.pgliteExisting, 1000),
    ),
  );
  rows.push(
    row(
      "start-up, new PGlite",
      ms(m.startupMs.pgliteNew),
      "<= 3,000 ms",
      met(m.startupMs.pgliteNew, 3000),
    ),
  );
  rows.push(
    row("RSS at rest, PostgreSQL", mb(m.restMb.postgres), "<= 150 MB", met(m.restMb.postgres, 150)),
  );
  rows.push(row("RSS at rest, PGlite", mb(m.restMb.pglite), "-", "-"));
  rows.push(row("RSS at 20,000 trades/s, PostgreSQL", mb(m.loadMb.postgres), "-", "-"));
  rows.push(
    row(
      "RSS at 20,000 trades/s, PGlite",
      mb(m.loadMb.pglite),
      "<= 300 MB",
      met(m.loadMb.pglite, 300),
    ),
  );
  return rows;
}

if (import.meta.main) {
  configureLogging({ level: "error" });
  const write = !Deno.args.includes("--no-write");
  const started = new Date();
  const machineLine = await machine();
  out(`machine: ${machineLine}`);
  const havePg = benchDatabaseUrl() !== undefined;

  out("1/5 REST client (upbot vs ccxt) ...");
  const rest = await benchRestClient();
  out("2/5 feed ingest on PGlite ...");
  const ingest: Record<string, IngestStep[]> = { pglite: await benchFeedIngest("pglite") };
  if (havePg) {
    out("    feed ingest on PostgreSQL ...");
    ingest.postgres = await benchFeedIngest("postgres");
  }
  out("3/5 start-up and memory of upbot ...");
  const mem = await benchMemoryStartup();
  out("4/5 where memory goes ...");
  const probeDir = `${await Deno.makeTempDir({ prefix: "upbot_probe_" })}/data`;
  const probeNew = await probe(probeDir);
  const probeExisting = await probe(probeDir);
  await Deno.remove(probeDir.replace(/\/data$/, ""), { recursive: true });
  out("5/5 PGlite settings ...");
  const pgliteVariants = await benchPgliteMemory();
  out("decision-to-wire on PGlite ...");
  const wire: WireFigures[] = [await benchDecisionToWire("pglite")];
  if (havePg) {
    out("    decision-to-wire on PostgreSQL ...");
    wire.push(await benchDecisionToWire("postgres"));
  }
  out("replay (backtest) and the live evaluator ...");
  const replay = await benchReplay(50_000, 3, havePg ? ["pglite", "postgres"] : ["pglite"]);

  const rows: BenchRow[] = [
    ...restRows(rest),
    ...Object.entries(ingest).map(([backend, steps]) => ingestRow(backend, steps)),
    ...memoryRows(mem),
    ...wire.map(wireRow),
    replayRow(replay),
  ];
  const printed = table(rows);
  out();
  out(printed);

  if (write) {
    const steps = Object.entries(ingest).flatMap(([backend, list]) => [
      `- ${backend}:`,
      ...list.map((s) => `  - ${describeStep(s)}`),
    ]);
    const breakdown = (p: Record<string, number>) =>
      `bare Deno ${fmt(p.bare!)} MB; + PGlite opened ${
        fmt(p.pgliteOpen! - p.bare!)
      } MB; + migrations ${fmt(p.migrated! - p.pgliteOpen!)} MB; + 5 empty Workers ${
        fmt(p.fiveWorkers! - p.migrated!)
      } MB (${fmt((p.fiveWorkers! - p.migrated!) / 5, 1)} MB each); total ${
        fmt(p.fiveWorkers!)
      } MB; main isolate heap ${fmt(p.mainHeapUsed!)} MB, external ${fmt(p.mainExternal!)} MB`;
    const variants = Object.entries(pgliteVariants).map(([name, mb]) =>
      `  - ${name}: +${fmt(mb)} MB resident (${
        fmt(pgliteVariants.default! - mb)
      } MB less than default)`
    );
    const doc = (await Deno.readTextFile(DOC).catch(() => "")).split("<!-- RESULTS:BEGIN -->");
    const results = [
      "<!-- RESULTS:BEGIN -->",
      `Run of ${started.toISOString()} on: ${machineLine}.`,
      "",
      printed,
      "",
      "Feed ingest, each rate (10 markets; the run stops at the first rate not sustained):",
      "",
      ...steps,
      "",
      "Where resident memory goes (a fresh process per line, `bench/_memory_probe.ts`):",
      "",
      `- new data directory (written from the PGlite template): ${breakdown(probeNew)}`,
      `- existing data directory: ${breakdown(probeExisting)}`,
      "",
      "PGlite settings (`bench/pglite_memory.ts`, PGlite opened directly, so `default` is PGlite's own 128 MB; upbot sets 16 MB; existing data directory, 50,000-row workload):",
      "",
      ...variants,
      "",
      "Decision to wire (`bench/decision_to_wire.ts`):",
      "",
      ...wire.map((w) => `- ${describeWire(w)}`),
      "<!-- RESULTS:END -->",
    ].join("\n");
    const tail = doc[1]?.split("<!-- RESULTS:END -->")[1] ?? "\n";
    await Deno.writeTextFile(DOC, `${doc[0] ?? ""}${results}${tail}`);
    out(`\nwrote ${DOC.pathname}`);
  }
}
