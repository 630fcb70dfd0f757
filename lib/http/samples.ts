/**
 * @module The sampler: every 10 s the main thread writes what lives only in memory (each actor's
 * restarts, heartbeat age and isolate heap, the supervisor's halt, the number of active alarms)
 * into `obs_samples`, so that Grafana can draw it; samples older than 7 days are deleted.
 */
import type { ActorStatus } from "../actors/supervisor.ts";
import type { Sql } from "../db/connect.ts";
import type { Logger } from "../log.ts";

/** How often a sample is taken. */
export const SAMPLE_INTERVAL_MS = 10_000;
/** How long samples are kept. */
export const SAMPLE_RETENTION_DAYS = 7;

/** What the sampler reads. */
export interface SampleSources {
  actors: () => ActorStatus[];
  /** Whether the supervisor halted trading (a critical actor failed for good). */
  supervisorHalted: () => boolean;
}

/** One sample row. */
export interface Sample {
  metric: string;
  label: string;
  value: number;
}

/** The in-memory facts of right now (the alarm count is read from the database). */
export async function takeSample(sql: Sql, sources: SampleSources): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (const a of sources.actors()) {
    samples.push({ metric: "actor_restarts", label: a.name, value: a.restarts });
    samples.push({ metric: "actor_running", label: a.name, value: a.state === "running" ? 1 : 0 });
    if (a.lastHeartbeatAgeMs !== null) {
      samples.push({
        metric: "actor_heartbeat_age_ms",
        label: a.name,
        value: a.lastHeartbeatAgeMs,
      });
    }
    if (a.memory !== null) {
      samples.push({ metric: "actor_heap_used_bytes", label: a.name, value: a.memory.heapUsed });
    }
  }
  samples.push({
    metric: "supervisor_halted",
    label: "",
    value: sources.supervisorHalted() ? 1 : 0,
  });
  const [alarms] = await sql<{ n: number }[]>`
    select count(*)::int as n from alarms where cleared_at is null`;
  samples.push({ metric: "alarms_active", label: "", value: alarms?.n ?? 0 });
  return samples;
}

/** Writes one sample at `at` and deletes samples older than the retention. */
export async function writeSample(sql: Sql, samples: Sample[], at: Date): Promise<void> {
  if (samples.length === 0) return;
  await sql`
    insert into obs_samples (ts, metric, label, value)
    select ${at}::timestamptz, * from unnest(
      ${samples.map((s) => s.metric)}::text[],
      ${samples.map((s) => s.label)}::text[],
      ${samples.map((s) => s.value)}::float8[])
    on conflict do nothing`;
  await sql`
    delete from obs_samples
    where ts < ${at}::timestamptz - make_interval(days => ${SAMPLE_RETENTION_DAYS})`;
}

/**
 * Starts sampling every {@linkcode SAMPLE_INTERVAL_MS} (the first sample at once). A failed
 * sample is logged and the next one tried; sampling never stops trading.
 *
 * @returns a function that stops sampling and waits for a sample in flight.
 */
export function startSampler(
  sql: Sql,
  sources: SampleSources,
  log: Logger,
  intervalMs = SAMPLE_INTERVAL_MS,
): () => Promise<void> {
  let running: Promise<void> | null = null;
  const tick = () => {
    if (running) return;
    running = (async () => {
      try {
        await writeSample(sql, await takeSample(sql, sources), new Date());
      } catch (err) {
        log.warn("Sampling for Grafana failed", { error: (err as Error).message });
      } finally {
        running = null;
      }
    })();
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return async () => {
    clearInterval(timer);
    await running;
  };
}
