/**
 * @module Shared pieces of the benchmark suite: the simulator in its own process (so it has its
 * own core and its CPU never counts against the client measured), resident memory from
 * `/proc/<pid>/status`, percentiles and output without `console`.
 */

const encoder = new TextEncoder();

/** Writes one line to stdout. */
export function out(line = ""): void {
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
}

/** Ten markets, as in the figures. */
export const TEN_MARKETS = [
  "KRW-BTC",
  "KRW-ETH",
  "KRW-XRP",
  "KRW-SOL",
  "KRW-DOGE",
  "KRW-ADA",
  "KRW-TRX",
  "KRW-AVAX",
  "KRW-LINK",
  "KRW-DOT",
];

/** A simulator running in a subprocess. */
export interface SimProcess {
  /** Process id of the simulator (for {@linkcode cpuTimeUs}). */
  pid: number;
  restUrl: string;
  wsUrl: string;
  accessKey: string;
  secretKey: string;
  close(): Promise<void>;
}

/** Starts `sim/main.ts` on a free port and waits for its URLs. */
export async function startSimProcess(options: {
  rate: number;
  markets?: string[];
  faults?: Record<string, unknown>;
  seed?: number;
}): Promise<SimProcess> {
  const args = [
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    new URL("../sim/main.ts", import.meta.url).pathname,
    "--port",
    "0",
    "--rate",
    String(options.rate),
    "--seed",
    String(options.seed ?? 1),
    "--markets",
    (options.markets ?? TEN_MARKETS).join(","),
  ];
  if (options.faults) args.push("--faults", JSON.stringify(options.faults));
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!/WebSocket:\s+(\S+)/.test(text) || !/Secret key:\s+(\S+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`simulator exited:\n${text}`);
    text += new TextDecoder().decode(value);
  }
  // Keep draining its log so the pipe never fills and blocks it.
  const drain = (async () => {
    try {
      for (;;) if ((await reader.read()).done) break;
    } catch { /* closed */ }
  })();
  return {
    pid: child.pid,
    restUrl: /REST:\s+(\S+)/.exec(text)![1]!,
    wsUrl: /WebSocket:\s+(\S+)/.exec(text)![1]!,
    accessKey: /Access key:\s+(\S+)/.exec(text)![1]!,
    secretKey: /Secret key:\s+(\S+)/.exec(text)![1]!,
    async close() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await drain;
    },
  };
}

/** Resident set size of a process (`self` or a pid) in MB, from /proc. */
export function rssMb(pid: number | "self" = "self"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/**
 * CPU time (user + system, all threads, ended ones included) a process has used so far, in µs,
 * from `/proc/<pid>/stat` (in clock ticks of 10 ms: measure over hundreds of ms).
 */
export function cpuTimeUs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** The `p`-th percentile (0-100) of `values` (nearest rank). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One result row of the suite's table. */
export interface BenchRow {
  part: string;
  measure: string;
  upbot: string;
  reference: string;
  ratio: string;
  target: string;
  met: "yes" | "no" | "-";
}

/** A number with thousands separators and `digits` decimals. */
export function fmt(n: number, digits = 0): string {
  return Number.isFinite(n)
    ? n.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "n/a";
}

/** The PostgreSQL server the suite may use, if any. */
export function benchDatabaseUrl(): string | undefined {
  return Deno.env.get("BENCH_DATABASE_URL") ?? Deno.env.get("TEST_DATABASE_URL");
}

/**
 * Creates a fresh database on the server of `adminUrl` (through `admin`, connected to it) and
 * returns its name and URL; the caller drops it.
 */
export async function createBenchDatabase(
  admin: { unsafe(query: string): PromiseLike<unknown> },
  adminUrl: string,
): Promise<{ name: string; url: string }> {
  const name = `upbot_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await admin.unsafe(`create database ${name}`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return { name, url: u.toString() };
}
