/**
 * @module upbot entry point: configuration -> database -> migrations -> actors -> HTTP server,
 * and a graceful stop on SIGINT / SIGTERM.
 *
 * Exit codes: 0 after a clean stop, 1 when start-up fails (or a standby's takeover finds its
 * control directory in use by another process), 2 for bad configuration. A leader that loses its
 * hot-standby lease (say, PostgreSQL restarted) does not exit: it stops its actors, stands by and
 * leads again once it can take the lease (`lib/upbot.ts`).
 */
import { loadConfigOrReport } from "./lib/cli.ts";
import { startUpbot } from "./lib/upbot.ts";
import { createLogger } from "./lib/log.ts";

async function main(): Promise<number> {
  const config = loadConfigOrReport();
  if (!config) return 2;
  const log = createLogger("main");
  let upbot;
  try {
    upbot = await startUpbot(config);
  } catch (err) {
    log.error("start-up failed", { error: (err as Error).message });
    return 1;
  }
  const { promise: stopSignal, resolve } = Promise.withResolvers<string>();
  const onSignal = (name: string) => () => resolve(name);
  const signals: [Deno.Signal, () => void][] = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
  ];
  for (const [sig, fn] of signals) Deno.addSignalListener(sig, fn);
  const ended = await Promise.race([stopSignal, upbot.fatal]);
  for (const [sig, fn] of signals) Deno.removeSignalListener(sig, fn);
  if (ended instanceof Error) {
    log.error("stopping", { error: ended.message });
    await upbot.stop();
    return 1;
  }
  log.info("stopping", { signal: ended });
  await upbot.stop();
  log.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main());
