/**
 * @module Benchmark of the simulator's market: trades per second generated (raw and on the batch
 * timer) and trades per second delivered to one public WebSocket client (simulator in a subprocess,
 * so server and client each get a core). Prints the numbers; asserts nothing.
 *
 * Usage: deno run --allow-net --allow-env --allow-read --allow-run bench/sim_throughput.ts [rate] [seconds]
 */
import { SimMarket } from "../sim/market.ts";
import { DEFAULT_MARKETS } from "../sim/market_specs.ts";

const rate = Number(Deno.args[0] ?? 50_000);
const seconds = Number(Deno.args[1] ?? 3);
const out = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));

// 1. Raw generation speed (no timer, no listeners).
{
  const market = new SimMarket({ seed: 1, markets: DEFAULT_MARKETS, rate: 0 });
  const n = 500_000;
  const t0 = performance.now();
  for (let done = 0; done < n; done += 1000) market.generate(1000, Date.now());
  const s = (performance.now() - t0) / 1000;
  out(`raw generation:            ${Math.round(n / s).toLocaleString("en")} trades/s`);
}

// 2. Generation on the batch timer at the requested rate, with one trade listener.
{
  const market = new SimMarket({ seed: 1, markets: DEFAULT_MARKETS, rate });
  let count = 0;
  market.onTrade(() => count++);
  market.start();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  market.stop();
  const s = (performance.now() - t0) / 1000;
  out(`timer generation at ${rate}: ${Math.round(count / s).toLocaleString("en")} trades/s`);
}

// 3. Delivery to one WebSocket client subscribed to every market's trades.
async function delivered(format: string): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      new URL("../sim/main.ts", import.meta.url).pathname,
      "--port",
      "0",
      "--rate",
      String(rate),
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!/WebSocket:\s+(\S+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error("simulator exited");
    text += new TextDecoder().decode(value);
  }
  const url = /WebSocket:\s+(\S+)/.exec(text)![1]!;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((r) => (ws.onopen = r));
  let trades = 0;
  const decoder = new TextDecoder();
  ws.onmessage = (ev) => {
    const parsed = JSON.parse(decoder.decode(ev.data as ArrayBuffer));
    trades += Array.isArray(parsed) ? parsed.length : 1;
  };
  ws.send(JSON.stringify([
    { ticket: "bench" },
    { type: "trade", codes: DEFAULT_MARKETS, is_only_realtime: true },
    { format },
  ]));
  await new Promise((r) => setTimeout(r, 500)); // warm-up
  const start = trades;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const got = trades - start;
  const s = (performance.now() - t0) / 1000;
  ws.close();
  child.kill("SIGTERM");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel().catch(() => {});
  return got / s;
}

for (const format of ["DEFAULT", "JSON_LIST"]) {
  const perSecond = await delivered(format);
  out(
    `delivered to 1 WS client (${format}): ${Math.round(perSecond).toLocaleString("en")} trades/s`,
  );
}
