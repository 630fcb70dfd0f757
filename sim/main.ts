/**
 * @module Command line of the simulator (`deno task sim`): flags or `SIM_*` variables, validated with
 * zod; prints where it listens and the test keys, then runs until SIGINT / SIGTERM.
 *
 * Exit status 2 on bad input, with a message naming the flag.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { KRW_MARKET_CODE_PATTERN, MARKET_BASE_SOURCE } from "../lib/domain.ts";
import { createLogger } from "../lib/log.ts";
import { parseFaultsPatch } from "./faults.ts";
import { DEFAULT_MARKETS } from "./market_specs.ts";
import {
  DEFAULT_ACCESS_KEY,
  DEFAULT_RATE,
  DEFAULT_SECRET_KEY,
  type SimulatorOptions,
  startSimulator,
  StateFileError,
} from "./mod.ts";

const log = createLogger("sim");

const USAGE = `Usage: deno task sim [options]   (each option also as a SIM_* variable)
  --port N          SIM_PORT         listen port (default 8790; 0 = any free port)
  --hostname H      SIM_HOSTNAME     listen address (default 127.0.0.1)
  --seed N          SIM_SEED         seed of the market generator (default 1)
  --markets A,B     SIM_MARKETS      market codes (default: a dozen KRW markets)
  --rate N          SIM_RATE         generated trades per second across markets (default ${DEFAULT_RATE})
  --access-key K    SIM_ACCESS_KEY   test access key (default ${DEFAULT_ACCESS_KEY})
  --secret-key K    SIM_SECRET_KEY   test secret key (default ${DEFAULT_SECRET_KEY})
  --krw N           SIM_KRW          starting KRW balance (default 10000000)
  --balances M=V,.. SIM_BALANCES     coins held at start, e.g. KRW-BTC=0.5,KRW-ETH=2 (avg_buy_price =
                                     the market's starting price; markets must be simulated)
  --state FILE      SIM_STATE        keep accounts, orders and used identifiers in FILE across restarts
                                     (created when missing; a corrupt FILE stops the start)
  --faults JSON     SIM_FAULTS       initial faults, e.g. '{"latency_ms":50,"error_rate":0.1}'
  --history-days N  SIM_HISTORY_DAYS whole days (0-31) of backdated market history (default 1)
  --volatility-scale X  SIM_VOLATILITY_SCALE  multiplier on every market's documented
                                     one-minute volatility, a test knob (default 1)
`;

const intText = (name: string, min: number, max: number) =>
  z.string().trim().regex(/^\d+$/, `${name} must be a whole number`).transform(Number).pipe(
    z.number().min(min, `${name} must be at least ${min}`).max(
      max,
      `${name} must be at most ${max}`,
    ),
  );

const CliSchema = z.object({
  port: intText("--port", 0, 65_535).default(8790),
  hostname: z.string().trim().min(1).default("127.0.0.1"),
  seed: intText("--seed", 0, 2 ** 31 - 1).default(1),
  markets: z.string().trim().transform((s) => s.split(",").map((m) => m.trim()).filter(Boolean))
    .pipe(
      z.array(z.string().regex(KRW_MARKET_CODE_PATTERN, "--markets takes KRW codes like KRW-BTC"))
        .min(1, "--markets needs at least one market"),
    )
    .optional(),
  rate: intText("--rate", 0, 1_000_000).default(DEFAULT_RATE),
  "access-key": z.string().trim().min(1).default(DEFAULT_ACCESS_KEY),
  "secret-key": z.string().trim().min(1).default(DEFAULT_SECRET_KEY),
  krw: intText("--krw", 0, 1e15).default(10_000_000),
  balances: z.string().trim().transform((s) => s.split(",").map((b) => b.trim()).filter(Boolean))
    .pipe(
      z.array(
        z.string().regex(
          new RegExp(`^KRW-${MARKET_BASE_SOURCE}=(?:\\d+(?:\\.\\d{1,8})?|\\.\\d{1,8})$`),
          "--balances takes MARKET=VOLUME pairs like KRW-BTC=0.5 (at most 8 decimals)",
        ),
      ).min(1, "--balances needs at least one MARKET=VOLUME pair"),
    )
    .optional(),
  state: z.string().trim().min(1).optional(),
  faults: z.string().optional(),
  "history-days": intText("--history-days", 0, 31).default(1),
  "volatility-scale": z.string().trim().regex(
    /^\d+(\.\d+)?$/,
    "--volatility-scale must be a non-negative number",
  ).transform(Number).pipe(z.number().max(1000, "--volatility-scale must be at most 1000"))
    .default(1),
});

const ENV_NAMES: Record<keyof z.input<typeof CliSchema>, string> = {
  port: "SIM_PORT",
  hostname: "SIM_HOSTNAME",
  seed: "SIM_SEED",
  markets: "SIM_MARKETS",
  rate: "SIM_RATE",
  "access-key": "SIM_ACCESS_KEY",
  "secret-key": "SIM_SECRET_KEY",
  krw: "SIM_KRW",
  balances: "SIM_BALANCES",
  state: "SIM_STATE",
  faults: "SIM_FAULTS",
  "history-days": "SIM_HISTORY_DAYS",
  "volatility-scale": "SIM_VOLATILITY_SCALE",
};

class UsageError extends Error {}

/** Turns flags (winning) and `SIM_*` variables into simulator options. */
export function parseCli(
  args: string[],
  env: (name: string) => string | undefined,
): SimulatorOptions & { port: number; hostname: string } {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(
        [...Object.keys(ENV_NAMES), "help"].map((k) => [
          k,
          { type: k === "help" ? "boolean" : "string" },
        ]),
      ) as Record<string, { type: "string" | "boolean" }>,
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (parsed.values.help) throw new UsageError("");
  const raw: Record<string, string> = {};
  for (const [key, envName] of Object.entries(ENV_NAMES)) {
    const value = parsed.values[key] ?? env(envName);
    if (typeof value === "string" && value !== "") raw[key] = value;
  }
  const result = CliSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = String(issue?.path[0] ?? "");
    throw new UsageError(
      `invalid --${key} (${ENV_NAMES[key as keyof typeof ENV_NAMES] ?? ""}): ${issue?.message}`,
    );
  }
  const v = result.data;
  let faults: SimulatorOptions["faults"];
  if (v.faults !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(v.faults);
    } catch {
      throw new UsageError("invalid --faults (SIM_FAULTS): not JSON");
    }
    const f = parseFaultsPatch(json);
    if (!f.ok) throw new UsageError(`invalid --faults (SIM_FAULTS): ${f.error}`);
    faults = f.value;
  }
  const markets = v.markets ?? [...DEFAULT_MARKETS];
  let balances: Record<string, string> | undefined;
  if (v.balances !== undefined) {
    balances = {};
    for (const pair of v.balances) {
      const [market = "", volume = ""] = pair.split("=");
      if (!markets.includes(market)) {
        throw new UsageError(
          `invalid --balances (SIM_BALANCES): ${market} is not a simulated market`,
        );
      }
      if (market in balances) {
        throw new UsageError(`invalid --balances (SIM_BALANCES): ${market} given twice`);
      }
      if (!(Number(volume) > 0)) {
        throw new UsageError(`invalid --balances (SIM_BALANCES): ${market} needs a volume above 0`);
      }
      balances[market] = volume;
    }
  }
  return {
    port: v.port,
    hostname: v.hostname,
    seed: v.seed,
    markets,
    rate: v.rate,
    accessKey: v["access-key"],
    secretKey: v["secret-key"],
    krw: v.krw,
    balances,
    stateFile: v.state,
    faults,
    historyDays: v["history-days"],
    volatilityScale: v["volatility-scale"],
  };
}

async function main(): Promise<void> {
  const out = (text: string) => Deno.stdout.writeSync(new TextEncoder().encode(text));
  let options;
  try {
    options = parseCli(Deno.args, (name) => Deno.env.get(name));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (err.message) log.error(`simulator: ${err.message}`);
    Deno.stderr.writeSync(new TextEncoder().encode(USAGE));
    Deno.exit(err.message ? 2 : 0);
  }
  let sim;
  try {
    sim = await startSimulator(options);
  } catch (err) {
    if (!(err instanceof StateFileError)) throw err;
    log.error(`simulator: cannot start: ${err.message}`);
    Deno.exit(1);
  }
  // Only the documented default secret is shown; a secret given by the user is never printed.
  const secretShown = sim.secretKey === DEFAULT_SECRET_KEY ? sim.secretKey : "(as given)";
  out(
    [
      "upbot simulator (Upbit-compatible) is running",
      `  REST:        ${sim.restUrl}`,
      `  WebSocket:   ${sim.wsUrl}`,
      `  Private WS:  ${sim.wsUrl}/private`,
      `  Access key:  ${sim.accessKey}`,
      `  Secret key:  ${secretShown}`,
      `  Markets:     ${(options.markets ?? []).join(",")}`,
      `  Rate:        ${options.rate} trades/s, seed ${options.seed}, ${options.historyDays} day(s) of history`,
      ...(options.stateFile ? [`  State file:  ${options.stateFile}`] : []),
      `  Faults:      ${sim.restUrl}/_sim/faults (GET, POST)   Orders: ${sim.restUrl}/_sim/orders`,
      "",
    ].join("\n"),
  );
  log.info("simulator started", { rest_url: sim.restUrl, ws_url: sim.wsUrl });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("simulator stopping", { signal });
    await sim.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
}

if (import.meta.main) await main();
