/**
 * @module Benchmark: messages per second between two actors and the latency each message adds,
 * through the real runtime (supervisor routing, zod validation on both sides), next to two raw
 * baselines without validation: a relay through the main thread and a direct MessageChannel.
 *
 * Run: `deno run -A --unstable-worker-options bench/actor_messaging.ts [rounds] [burst] [batch]`
 * (defaults 2000 round trips, bursts of 20000, 100 bars per batch). One JSON line (or a pretty
 * line on a terminal) per result.
 */
import { configureLogging, createLogger } from "../lib/log.ts";
import { UpbotSupervisor } from "../lib/pipeline/supervisor.ts";

const [rounds = 2000, burst = 20_000, batchSize = 100] = Deno.args.map(Number);
const warmup = Math.min(200, rounds);
configureLogging({ format: Deno.stdout.isTerminal() ? "pretty" : "json", level: "info" });
const log = createLogger("bench");

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

async function runtime(): Promise<void> {
  const module = new URL("./actors/messaging_peer.ts", import.meta.url);
  const common = { rounds, warmup, burst, batchSize };
  const supervisor = new UpbotSupervisor({
    actors: [
      { name: "server", module, config: { role: "server", peer: "client", ...common } },
      { name: "client", module, config: { role: "client", peer: "server", ...common } },
    ],
    log: { level: "warn", format: "json" },
    heartbeatIntervalMs: 100,
    heartbeatTimeoutMs: 60_000,
    statusLogIntervalMs: 0,
    mailboxLimit: burst,
  });
  await supervisor.start();
  const deadline = Date.now() + 120_000;
  let metrics: Record<string, unknown> = {};
  while (metrics.done !== true) {
    if (Date.now() > deadline) throw new Error("runtime benchmark timed out");
    await new Promise((resolve) => setTimeout(resolve, 100));
    metrics = supervisor.status().find((s) => s.name === "client")?.metrics ?? {};
  }
  await supervisor.stop("bench done");
  const p50 = Number(metrics.rttP50Us);
  const p99 = Number(metrics.rttP99Us);
  // One round trip is two actor-to-actor messages, each two thread hops (actor -> main -> actor).
  log.info("runtime: actor -> supervisor -> actor, validated", {
    rounds,
    rtt_p50_us: p50,
    rtt_p99_us: p99,
    per_message_p50_us: p50 / 2,
    per_message_p99_us: p99 / 2,
    per_hop_p50_us: p50 / 4,
    per_hop_p99_us: p99 / 4,
  });
  log.info("runtime: burst of single messages (one bar each)", {
    burst,
    msg_per_s: metrics.singleMsgPerSec,
  });
  log.info("runtime: burst of bars.final batches", {
    batch_size: batchSize,
    msg_per_s: metrics.batchMsgPerSec,
    bars_per_s: metrics.batchBarsPerSec,
  });
}

// Raw baselines: no runtime, no validation. `relay` forwards through the main thread; `direct`
// uses a MessageChannel port between the two workers.
const RAW_WORKER = `
let peer;
self.onmessage = (e) => {
  const d = e.data;
  if (d.port) { peer = d.port; peer.onmessage = (m) => onPeer(m.data); return; }
  onPeer(d);
};
let role, count = 0, rtts = [], t0 = 0, n = 0, burst = 0, resolveNext;
const out = (m) => (peer ? peer.postMessage(m) : self.postMessage(m));
function onPeer(m) {
  if (m.cmd === "run") { role = "client"; n = m.rounds; burst = m.burst; run(); return; }
  if (m.k === "ping") { out({ k: "pong" }); return; }
  if (m.k === "bulk") { if (++count === m.of) { count = 0; out({ k: "pong" }); } return; }
  if (m.k === "pong") { resolveNext(); return; }
}
async function run() {
  for (let i = 0; i < n; i++) {
    const p = new Promise((r) => (resolveNext = r)); t0 = performance.now();
    out({ k: "ping", type: "wake", topic: "account" }); await p; rtts.push(performance.now() - t0);
  }
  const p = new Promise((r) => (resolveNext = r)); const s = performance.now();
  for (let i = 0; i < burst; i++) out({ k: "bulk", of: burst, type: "wake", topic: "paper_trades" });
  await p;
  self.postMessage({ done: true, rtts, perSec: burst / ((performance.now() - s) / 1000) });
}
`;

async function raw(mode: "relay" | "direct"): Promise<void> {
  const url = URL.createObjectURL(new Blob([RAW_WORKER], { type: "text/javascript" }));
  const a = new Worker(url, { type: "module" });
  const b = new Worker(url, { type: "module" });
  const result = new Promise<{ rtts: number[]; perSec: number }>((resolve) => {
    if (mode === "direct") {
      const channel = new MessageChannel();
      a.postMessage({ port: channel.port1 }, [channel.port1]);
      b.postMessage({ port: channel.port2 }, [channel.port2]);
      a.onmessage = (e) => e.data.done && resolve(e.data);
    } else {
      a.onmessage = (e) => (e.data.done ? resolve(e.data) : b.postMessage(e.data));
      b.onmessage = (e) => a.postMessage(e.data);
    }
  });
  a.postMessage({ cmd: "run", rounds: rounds + warmup, burst });
  const { rtts, perSec } = await result;
  a.terminate();
  b.terminate();
  URL.revokeObjectURL(url);
  const sorted = rtts.slice(warmup).sort((x, y) => x - y);
  const hops = mode === "direct" ? 2 : 4;
  log.info(`raw baseline: ${mode === "direct" ? "MessageChannel port" : "relay via main"}`, {
    rounds,
    rtt_p50_us: Math.round(quantile(sorted, 0.5) * 1000),
    rtt_p99_us: Math.round(quantile(sorted, 0.99) * 1000),
    per_hop_p50_us: Math.round((quantile(sorted, 0.5) * 1000) / hops),
    burst_msg_per_s: Math.round(perSec),
  });
}

log.info("actor messaging benchmark", {
  deno: Deno.version.deno,
  cpus: navigator.hardwareConcurrency,
  rounds,
  burst,
  batch_size: batchSize,
});
await runtime();
await raw("relay");
await raw("direct");
