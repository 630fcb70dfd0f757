/**
 * @module Actor used by bench/actor_messaging.ts. Role `server`: echoes latency probes (wake
 * `account`), counts a burst of single-bar messages and then a burst of bar batches, answering
 * once each burst is complete. Role `client`: measures round trips, then the bursts, and reports
 * the results as metrics. (Bursts use `bars.final`: identical wakes are coalesced by the runtime,
 * so a burst of wakes would not arrive one by one.)
 */
import { z } from "zod";
import { runUpbotActor, type UpbotContext } from "../../lib/pipeline/runtime.ts";
import type { BarMessage } from "../../lib/pipeline/messages.ts";

const Config = z.object({
  role: z.enum(["client", "server"]),
  peer: z.string(),
  rounds: z.number().int().positive(),
  warmup: z.number().int().nonnegative(),
  burst: z.number().int().positive(),
  batchSize: z.number().int().positive(),
});
type Config = z.output<typeof Config>;

let bars = 0;
let burstsDone = 0;
let pending: (() => void) | undefined;

function reply(): Promise<void> {
  return new Promise((resolve) => (pending = resolve));
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

async function runClient(ctx: UpbotContext<Config>): Promise<void> {
  const { peer, rounds, warmup, burst, batchSize } = ctx.config;
  const rtts: number[] = [];
  for (let i = 0; i < warmup + rounds; i++) {
    const t0 = performance.now();
    const answered = reply();
    ctx.send(peer, { type: "wake", topic: "account" });
    await answered;
    if (i >= warmup) rtts.push(performance.now() - t0);
  }
  rtts.sort((a, b) => a - b);

  const batch: BarMessage[] = Array.from({ length: batchSize }, (_, i) => ({
    ts: 1_700_000_000_000 + i * 1000,
    open: 143_250_000,
    high: 143_300_000,
    low: 143_200_000,
    close: 143_280_000,
    volume: 0.123,
    quoteVolume: 17_623_440,
    tradeCount: 12,
    buyVolume: 0.07,
    sellVolume: 0.053,
  }));
  let answered = reply();
  let t0 = performance.now();
  for (let i = 0; i < burst; i++) {
    ctx.send(peer, { type: "bars.final", market: "KRW-BTC", bars: batch.slice(0, 1) });
  }
  await answered;
  const singleMs = performance.now() - t0;

  const messages = Math.ceil(burst / batchSize);
  answered = reply();
  t0 = performance.now();
  for (let i = 0; i < messages; i++) {
    ctx.send(peer, { type: "bars.final", market: "KRW-BTC", bars: batch });
  }
  await answered;
  const batchMs = performance.now() - t0;

  ctx.setMetrics({
    done: true,
    rounds,
    rttP50Us: Math.round(quantile(rtts, 0.5) * 1000),
    rttP99Us: Math.round(quantile(rtts, 0.99) * 1000),
    singleMsgPerSec: Math.round(burst / (singleMs / 1000)),
    batchBarsPerSec: Math.round((messages * batchSize) / (batchMs / 1000)),
    batchMsgPerSec: Math.round(messages / (batchMs / 1000)),
  });
}

runUpbotActor({
  config: Config,
  start(ctx) {
    if (ctx.config.role === "client") {
      // After `ready`, so the supervisor routes the answers to us.
      setTimeout(() => runClient(ctx).catch((err) => ctx.reportError(err)), 0);
    }
  },
  messages: {
    wake(msg, from, ctx) {
      if (ctx.config.role === "client") {
        pending?.();
        return;
      }
      if (msg.topic === "account") ctx.send(from, msg);
    },
    "bars.final"(msg, from, ctx) {
      bars += msg.bars.length;
      const { burst, batchSize } = ctx.config;
      // First burst: `burst` messages of one bar; second: whole batches.
      const expected = burstsDone === 0 ? burst : Math.ceil(burst / batchSize) * batchSize;
      if (bars === expected) {
        bars = 0;
        burstsDone++;
        ctx.send(from, { type: "wake", topic: "order_attempts" });
      }
    },
  },
});
