/**
 * @module REST client benchmark: signed `GET /v1/accounts` requests per second and their latency,
 * upbot's `UpbitRest` next to ccxt's `upbit` class in the same run, against the simulator in its
 * own process with its limits raised (`rate_limit_factor` 1000) and both clients' own limiters
 * off. Rounds alternate between the clients so that a noisy neighbour hits both alike. Each round
 * records the CPU time per request of this process (the client's own cost) and of the simulator's
 * (what answering that client cost the other side of the same cores).
 *
 * Usage: deno run -A bench/rest_client.ts [requests per round] [concurrency]
 */
// ccxt is the reference here only (as in tests/sim_server_ccxt_test.ts), never used by upbot.
// deno-lint-ignore no-import-prefix
import ccxt from "npm:ccxt@4.5.84";
import { UpbitRest } from "../lib/upbit/rest.ts";
import process from "node:process";
import { type BenchRow, cpuTimeUs, fmt, out, percentile, startSimProcess } from "./_harness.ts";

/** Throughput and latency of one client. */
export interface ClientFigures {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time (user + system) of this process per request, in µs: the client's own cost. */
  cpuUsPerRequest: number;
  /** CPU time of the simulator's process per request while it answered this client, in µs. */
  simCpuUsPerRequest: number;
}

async function drive(
  call: () => Promise<unknown>,
  requests: number,
  concurrency: number,
  latencies: number[],
  cpu: { us: number; simUs: number },
  simPid?: number,
): Promise<number> {
  let next = 0;
  const sim0 = simPid === undefined ? 0 : cpuTimeUs(simPid);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < requests) {
      const s = performance.now();
      await call();
      latencies.push(performance.now() - s);
    }
  }));
  const elapsed = performance.now() - t0;
  const used = process.cpuUsage(cpu0);
  cpu.us += used.user + used.system;
  if (simPid !== undefined) cpu.simUs += cpuTimeUs(simPid) - sim0;
  return elapsed;
}

/** Runs the comparison; returns both clients' figures. */
export async function benchRestClient(
  options: { requests?: number; concurrency?: number; rounds?: number } = {},
): Promise<{ upbot: ClientFigures; ccxt: ClientFigures }> {
  const requests = options.requests ?? 1_000;
  const concurrency = options.concurrency ?? 4;
  const rounds = options.rounds ?? 3;
  const sim = await startSimProcess({ rate: 0, faults: { rate_limit_factor: 1000 } });
  const unlimited = { limit: 1_000_000_000, windowMs: 1000 };
  const upbot = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
    rateLimiter: { budgets: { default: unlimited }, marginMs: 0 },
  });
  const exchange = new ccxt.upbit({
    apiKey: sim.accessKey,
    secret: sim.secretKey,
    enableRateLimit: false,
  });
  exchange.urls.api = { public: sim.restUrl, private: sim.restUrl };
  const timings = {
    upbot: { ms: 0, lat: [] as number[], cpu: { us: 0, simUs: 0 } },
    ccxt: { ms: 0, lat: [] as number[], cpu: { us: 0, simUs: 0 } },
  };
  try {
    // Warm-up: connections, JIT, ccxt's lazy set-up.
    await drive(() => upbot.getAccounts(), 200, concurrency, [], { us: 0, simUs: 0 });
    await drive(() => exchange.privateGetAccounts(), 200, concurrency, [], { us: 0, simUs: 0 });
    for (let r = 0; r < rounds; r++) {
      timings.upbot.ms += await drive(
        () => upbot.getAccounts(),
        requests,
        concurrency,
        timings.upbot.lat,
        timings.upbot.cpu,
        sim.pid,
      );
      timings.ccxt.ms += await drive(
        () => exchange.privateGetAccounts(),
        requests,
        concurrency,
        timings.ccxt.lat,
        timings.ccxt.cpu,
        sim.pid,
      );
    }
  } finally {
    upbot.close();
    await exchange.close?.();
    await sim.close();
  }
  const figures = (
    t: { ms: number; lat: number[]; cpu: { us: number; simUs: number } },
  ): ClientFigures => ({
    perSecond: (requests * rounds) / (t.ms / 1000),
    cpuUsPerRequest: t.cpu.us / (requests * rounds),
    simCpuUsPerRequest: t.cpu.simUs / (requests * rounds),
    p50Ms: percentile(t.lat, 50),
    p99Ms: percentile(t.lat, 99),
  });
  return { upbot: figures(timings.upbot), ccxt: figures(timings.ccxt) };
}

/** The suite's rows. */
export function restRows(r: { upbot: ClientFigures; ccxt: ClientFigures }): BenchRow[] {
  const ratio = r.upbot.perSecond / r.ccxt.perSecond;
  return [
    {
      part: "REST client",
      measure: "signed GET /v1/accounts per s (4 in flight)",
      upbot: fmt(r.upbot.perSecond),
      reference: `ccxt ${fmt(r.ccxt.perSecond)}`,
      ratio: `${fmt(ratio, 2)}x`,
      target: ">= 2x",
      met: ratio >= 2 ? "yes" : "no",
    },
    {
      part: "REST client",
      measure: "latency p50 / p99 (ms)",
      upbot: `${fmt(r.upbot.p50Ms, 2)} / ${fmt(r.upbot.p99Ms, 2)}`,
      reference: `ccxt ${fmt(r.ccxt.p50Ms, 2)} / ${fmt(r.ccxt.p99Ms, 2)}`,
      ratio: `${fmt(r.ccxt.p99Ms / r.upbot.p99Ms, 2)}x (p99)`,
      target: "-",
      met: "-",
    },
    {
      // The simulator answering both clients caps their throughput alike; the client's own CPU
      // time per request is what the client itself costs.
      part: "REST client",
      measure: "client CPU per request (µs, user + system)",
      upbot: fmt(r.upbot.cpuUsPerRequest),
      reference: `ccxt ${fmt(r.ccxt.cpuUsPerRequest)}`,
      ratio: `${fmt(r.ccxt.cpuUsPerRequest / r.upbot.cpuUsPerRequest, 2)}x`,
      target: "-",
      met: "-",
    },
    {
      // What one answer costs the simulator (its own process, sharing the same 2 cores): a
      // client's rate cannot exceed 1 / (this cost) however cheap the client is.
      part: "REST client",
      measure: "simulator CPU per request (µs), answering each",
      upbot: fmt(r.upbot.simCpuUsPerRequest),
      reference: `ccxt ${fmt(r.ccxt.simCpuUsPerRequest)}`,
      ratio: "-",
      target: "-",
      met: "-",
    },
  ];
}

if (import.meta.main) {
  const result = await benchRestClient({
    requests: Number(Deno.args[0] ?? 1_000),
    concurrency: Number(Deno.args[1] ?? 4),
  });
  for (const row of restRows(result)) out(JSON.stringify(row));
}
