/**
 * @module What every command-line entry point (upbot, demo, smoke) does first: load the
 * configuration (bad values logged one line per variable; the caller exits with status 2) and
 * set up logging from it.
 */
import {
  type Config,
  ConfigError,
  loadConfig,
  type LoadConfigOptions,
  secretValues,
} from "./config.ts";
import { configureLogging, registerSecret, writeLog } from "./log.ts";

/** Applies `LOG_LEVEL` / `LOG_FORMAT` and masks every secret of `config` in this thread's logs. */
export function setUpLogging(config: Config): void {
  const format = config.LOG_FORMAT === "auto"
    ? (Deno.stdout.isTerminal() ? "pretty" : "json")
    : config.LOG_FORMAT;
  configureLogging({ level: config.LOG_LEVEL, format });
  for (const secret of secretValues(config)) registerSecret(secret);
}

/**
 * {@linkcode loadConfig}, with every problem logged (never a secret value); null when invalid.
 *
 * @example
 * ```ts ignore
 * const config = loadConfigOrReport();
 * if (!config) Deno.exit(2);
 * ```
 */
export function loadConfigOrReport(options?: LoadConfigOptions): Config | null {
  try {
    return loadConfig(options);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) writeLog("error", "config", `${p.name} ${p.problem}`);
    } else {
      writeLog("error", "config", (err as Error).message);
    }
    return null;
  }
}
