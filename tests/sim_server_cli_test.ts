import assert from "node:assert/strict";
import { parseCli } from "../sim/main.ts";
import { startSimulator } from "../sim/mod.ts";
import { signedQuery } from "./_sim_auth.ts";

const MAIN = new URL("../sim/main.ts", import.meta.url).pathname;

function simCommand(args: string[], env: Record<string, string> = {}): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "--allow-read", MAIN, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Reads stdout until `done(text)` holds, returns what was read. */
async function readUntil(
  stream: ReadableStream<Uint8Array>,
  done: (text: string) => boolean,
): Promise<{ text: string; reader: ReadableStreamDefaultReader<Uint8Array> }> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!done(text)) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    text += decoder.decode(value, { stream: true });
  }
  return { text, reader };
}

Deno.test("sim/main.ts prints its REST and WebSocket URLs and the test keys, stops on SIGTERM", async () => {
  const child = simCommand(["--port", "0", "--rate", "0", "--markets", "KRW-BTC,KRW-ETH"]).spawn();
  const { text, reader } = await readUntil(child.stdout, (t) => t.includes("Faults:"));
  const rest = /REST:\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(text)?.[1];
  assert.ok(rest, text);
  assert.match(text, /WebSocket:\s+ws:\/\/127\.0\.0\.1:\d+\/websocket\/v1\n/);
  assert.match(text, /Private WS:\s+ws:\/\/127\.0\.0\.1:\d+\/websocket\/v1\/private/);
  assert.match(text, /Access key:\s+sim-access-key/);
  assert.match(text, /Secret key:\s+sim-secret-key/);
  assert.match(text, /Markets:\s+KRW-BTC,KRW-ETH/);
  // It really serves.
  const markets = await (await fetch(`${rest}/v1/market/all`)).json();
  assert.deepEqual(markets.map((m: { market: string }) => m.market), ["KRW-BTC", "KRW-ETH"]);
  child.kill("SIGTERM");
  const status = await child.status;
  assert.equal(status.code, 0);
  reader.releaseLock();
  await child.stdout.cancel();
  await child.stderr.cancel();
});

Deno.test("sim/main.ts rejects bad input with a clear message and exit status 2", async () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--port", "abc"], {}, /--port/],
    [["--rate", "-5"], {}, /--rate/],
    [["--markets", "btc"], {}, /--markets/],
    [["--faults", '{"error_rate":3}'], {}, /--faults.*error_rate/],
    [["--faults", "nope"], {}, /--faults.*not JSON/],
    [["--bogus"], {}, /bogus/],
    [[], { SIM_SEED: "x" }, /--seed \(SIM_SEED\)/],
    [["--balances", "KRW-BTC"], {}, /--balances.*MARKET=VOLUME/],
    [["--balances", "KRW-BTC=-1"], {}, /--balances.*MARKET=VOLUME/],
    [["--balances", "KRW-BTC=0.123456789"], {}, /--balances.*8 decimals/],
    [["--markets", "KRW-BTC", "--balances", "KRW-ETH=1"], {}, /KRW-ETH is not a simulated/],
    [["--balances", "KRW-BTC=1,KRW-BTC=2"], {}, /KRW-BTC given twice/],
    [[], { SIM_BALANCES: "KRW-BTC=0" }, /--balances \(SIM_BALANCES\).*above 0/],
  ];
  for (const [args, env, message] of cases) {
    const out = await simCommand(args, env).output();
    assert.equal(out.code, 2, args.join(" "));
    const stderr = new TextDecoder().decode(out.stderr);
    assert.match(stderr, message, args.join(" "));
    assert.match(stderr, /Usage: deno task sim/);
  }
});

Deno.test("parseCli: flags win over SIM_* variables; defaults are documented values", () => {
  const env: Record<string, string> = {
    SIM_PORT: "9000",
    SIM_SEED: "7",
    SIM_MARKETS: "KRW-BTC, KRW-XRP",
    SIM_RATE: "50",
    SIM_ACCESS_KEY: "env-access",
    SIM_KRW: "5000000",
    SIM_FAULTS: '{"latency_ms":20}',
    SIM_BALANCES: "KRW-BTC=0.5, KRW-XRP=2",
    SIM_STATE: "/tmp/sim-state.json",
  };
  const fromEnv = parseCli([], (name) => env[name]);
  assert.equal(fromEnv.port, 9000);
  assert.equal(fromEnv.seed, 7);
  assert.deepEqual(fromEnv.markets, ["KRW-BTC", "KRW-XRP"]);
  assert.equal(fromEnv.rate, 50);
  assert.equal(fromEnv.accessKey, "env-access");
  assert.equal(fromEnv.secretKey, "sim-secret-key");
  assert.equal(fromEnv.krw, 5_000_000);
  assert.deepEqual(fromEnv.faults, { latency_ms: 20 });
  assert.deepEqual(fromEnv.balances, { "KRW-BTC": "0.5", "KRW-XRP": "2" });
  assert.equal(fromEnv.stateFile, "/tmp/sim-state.json");
  const faults = parseCli(
    ["--faults", '{"server_error_after_create_rate":0.2,"server_error_burn_rate":0.1}'],
    () => undefined,
  );
  assert.deepEqual(faults.faults, {
    server_error_after_create_rate: 0.2,
    server_error_burn_rate: 0.1,
  });
  const flags = parseCli(["--port", "0", "--rate", "0", "--secret-key", "s3"], (name) => env[name]);
  assert.equal(flags.port, 0);
  assert.equal(flags.rate, 0);
  assert.equal(flags.secretKey, "s3");
  const defaults = parseCli([], () => undefined);
  assert.equal(defaults.port, 8790);
  assert.equal(defaults.seed, 1);
  assert.equal(defaults.rate, 200);
  assert.equal(defaults.markets?.length, 12);
  assert.equal(defaults.accessKey, "sim-access-key");
  assert.equal(defaults.krw, 10_000_000);
  assert.equal(defaults.faults, undefined);
  assert.equal(defaults.balances, undefined);
  assert.equal(defaults.stateFile, undefined);
});

Deno.test("balances: the account starts holding the owner's coins at the starting price", async () => {
  const sim = await startSimulator({
    rate: 0,
    markets: ["KRW-BTC", "KRW-ETH"],
    krw: 1_000_000,
    balances: { "KRW-BTC": "0.5", "KRW-ETH": 2 },
  });
  try {
    const keys = { accessKey: sim.accessKey, secretKey: sim.secretKey };
    const res = await signedQuery(sim.restUrl, "GET", "/v1/accounts", keys);
    const accounts: Record<string, string>[] = await res.json();
    const ticker = await (await fetch(`${sim.restUrl}/v1/ticker?markets=KRW-BTC,KRW-ETH`)).json();
    const price = (m: string) =>
      String(ticker.find((t: { market: string }) => t.market === m).trade_price);
    const pick = (c: string) => {
      const a = accounts.find((x) => x.currency === c);
      return a && [a.balance, a.locked, a.avg_buy_price];
    };
    assert.deepEqual(pick("KRW"), ["1000000", "0", "0"]);
    assert.deepEqual(pick("BTC"), ["0.5", "0", price("KRW-BTC")]);
    assert.deepEqual(pick("ETH"), ["2", "0", price("KRW-ETH")]);
    assert.ok(Number(price("KRW-BTC")) > 0);
  } finally {
    await sim.close();
  }
  await assert.rejects(
    () => startSimulator({ rate: 0, markets: ["KRW-BTC"], balances: { "KRW-ETH": "1" } }),
    /KRW-ETH is not a simulated market/,
  );
  await assert.rejects(
    () => startSimulator({ rate: 0, balances: { "KRW-BTC": "0" } }),
    /KRW-BTC needs a volume above 0/,
  );
});
