/**
 * @module upbot entry point: configuration -> database -> migrations -> actors -> HTTP server,
 * and a graceful stop on SIGINT / SIGTERM. `--check-config` only checks the configuration (`.env`
 * and the environment) and says which mode it would trade in: run it with a new version before
 * stopping the old one (a new version may refuse a setting an older one accepted).
 *
 * Exit codes: 0 after a clean stop (or a valid configuration with `--check-config`), 1 when
 * start-up fails (or a standby's takeover finds its control directory in use by another process),
 * 2 for bad configuration or an unknown argument. A leader that loses its
 * hot-standby lease (say, PostgreSQL restarted) does not exit: it stops its actors, stands by and
 * leads again once it can take the lease (`lib/upbot.ts`).
 */
import { loadConfigOrReport, setUpLogging } from "./lib/cli.ts";
import { describeDatabaseUrl } from "./lib/config.ts";
import { decideTradeMode } from "./lib/execution/guard.ts";
import { startUpbot } from "./lib/upbot.ts";
import { createLogger, writeLog } from "./lib/log.ts";

async function main(args: string[]): Promise<number> {
  const unknown = args.filter((a) => a !== "--check-config");
  if (unknown.length > 0) {
    writeLog(
      "error",
      "main",
      `unknown argument ${
        JSON.stringify(unknown[0])
      }: upbot takes its settings from .env and the environment; its only option is --check-config`,
    );
    return 2;
  }
  const config = loadConfigOrReport();
  if (!config) return 2;
  const log = createLogger("main");
  if (args.includes("--check-config")) {
    setUpLogging(config);
    const guard = decideTradeMode(config);
    log.info("configuration OK", {
      mode: guard.effective,
      requested_mode: guard.requested,
      downgraded_because: guard.downgradeReasons.length > 0
        ? guard.downgradeReasons.join(", ")
        : undefined,
      database: config.DATABASE_URL
        ? describeDatabaseUrl(config.DATABASE_URL)
        : `embedded PGlite in ${config.DATA_DIR}`,
      markets: config.MARKETS.join(","),
    });
    return 0;
  }
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

if (import.meta.main) Deno.exit(await main(Deno.args));
