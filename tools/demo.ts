/**
 * @module `deno task demo`: the Upbit-compatible simulator and upbot pointed at it, with the
 * `test` profile, in one process, so the whole pipeline runs offline within a minute: bars, paper
 * trades, shadow attempts, balances. Its data lives in `DATA_DIR` (default `./data/demo`), apart
 * from a real run's. Stop it with Ctrl-C.
 */
import { loadConfigOrReport } from "../lib/cli.ts";
import { createLogger } from "../lib/log.ts";
import { startUpbot } from "../lib/upbot.ts";
import { startSimulator } from "../sim/mod.ts";

const env = Deno.env.toObject();
const sim = await startSimulator({
  seed: 1,
  markets: (env.MARKETS ?? "KRW-BTC,KRW-ETH,KRW-XRP").split(",").map((m) => m.trim()),
  rate: Number(env.SIM_RATE ?? 60),
  // The realistic market (scale 1) moves too little in a minute to cross the test profile's
  // take-profit / stop-loss: the README promises paper trades within a minute, so the demo runs
  // the same ten-fold volatility as the end-to-end pipeline test.
  volatilityScale: 10,
});
const config = loadConfigOrReport({
  env: {
    DATA_DIR: "./data/demo",
    MARKETS: "KRW-BTC,KRW-ETH,KRW-XRP",
    PAPER_POLICY_PROFILE: "test",
    ...env,
    // The venue is always the simulator, with its test keys: never real Upbit from the demo.
    UPBIT_REST_URL: sim.restUrl,
    UPBIT_WS_URL: sim.wsUrl,
    UPBIT_ACCESS_KEY: sim.accessKey,
    UPBIT_SECRET_KEY: sim.secretKey,
  },
});
if (!config) {
  await sim.close();
  Deno.exit(2);
}
const log = createLogger("demo");
const upbot = await startUpbot(config);
log.info(
  `Demo running: simulator at ${sim.restUrl}, dashboard JSON at ${upbot.httpUrl}/api/actors, health at ${upbot.httpUrl}/healthz. Ctrl-C stops.`,
);
const { promise, resolve } = Promise.withResolvers<void>();
Deno.addSignalListener("SIGINT", () => resolve());
Deno.addSignalListener("SIGTERM", () => resolve());
await promise;
await upbot.stop();
await sim.close();
log.info("Demo stopped");
Deno.exit(0);
