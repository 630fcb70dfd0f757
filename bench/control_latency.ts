/**
 * @module Benchmark of the control channel (`deno task halt | resume | flatten`): how long from a
 * command file written to its acknowledgement, i.e. applied to the database, with the running
 * upbot's default poll interval, on the embedded database; then the same through the real tool in
 * its own process (process start-up included). Prints the numbers; asserts nothing.
 *
 * Usage: deno run -A bench/control_latency.ts [commands]
 */
import {
  controlDirLayout,
  ControlDirWatcher,
  enqueueControlCommand,
  waitForControlAck,
} from "../lib/control/command_dir.ts";
import { newControlCommand } from "../lib/control/commands.ts";
import { connect } from "../lib/db/connect.ts";
import { startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { configureLogging } from "../lib/log.ts";
import { migrate } from "../lib/db/migrate.ts";

const n = Number(Deno.args[0] ?? 20);
const out = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
configureLogging({ level: "error", format: "json" });

const dataDir = await Deno.makeTempDir({ prefix: "upbot_bench_control_" });
const embedded = await startEmbeddedDatabase({ dataDir: null });
const sql = connect({ kind: "embedded", ...embedded.endpoint });
await migrate(sql);
const layout = controlDirLayout(dataDir);
const watcher = new ControlDirWatcher({ layout, sql });
await watcher.claim();
watcher.start();

function summary(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return `p50 ${at(0.5).toFixed(0)} ms, p90 ${at(0.9).toFixed(0)} ms, max ${
    sorted.at(-1)!.toFixed(0)
  } ms (n=${ms.length})`;
}

const inProcess: number[] = [];
for (let i = 0; i < n; i++) {
  const command = i % 2 === 0
    ? newControlCommand({ action: "halt", scope: "KRW-BTC", reason: `bench ${i}` })
    : newControlCommand({ action: "resume", scope: "KRW-BTC" });
  const t0 = performance.now();
  await enqueueControlCommand(layout, command);
  await waitForControlAck(layout, command.id, { timeoutMs: 10_000, pollIntervalMs: 5 });
  inProcess.push(performance.now() - t0);
}
out(`file written -> applied and acknowledged: ${summary(inProcess)}`);

const config = new URL("../deno.json", import.meta.url).pathname;
const tool: number[] = [];
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  const result = await new Deno.Command(Deno.execPath(), {
    args: [
      "task",
      "--quiet",
      "--config",
      config,
      "halt",
      "--reason",
      "bench",
      "--market",
      "KRW-BTC",
    ],
    env: { DATA_DIR: dataDir, LOG_LEVEL: "error" },
    stdout: "null",
    stderr: "null",
  }).output();
  if (result.code !== 0) out(`deno task halt exited ${result.code}`);
  tool.push(performance.now() - t0);
}
out(`deno task halt, whole process:           ${summary(tool)}`);

await watcher.stop();
await sql.end({ timeout: 5 });
await embedded.close();
await Deno.remove(dataDir, { recursive: true });
