/**
 * @module upbot entry point: configuration -> database -> migrations -> actors -> HTTP server,
 * and a graceful stop on SIGINT / SIGTERM.
 *
 * Exit codes: 0 after a clean stop, 1 when start-up fails or another upbot took the database,
 * 2 for bad configuration.
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
  const lost = upbot.lost.then((reason) => ({ lost: reason }));
  const outcome = await Promise.race([stopSignal.then((signal) => ({ signal })), lost]);
  for (const [sig, fn] of signals) Deno.removeSignalListener(sig, fn);
  if ("lost" in outcome) log.error(outcome.lost);
  else log.info("stopping", { signal: outcome.signal });
  await upbot.stop();
  log.info("stopped");
  return "lost" in outcome ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
