/**
 * @module Where resident memory goes, measured in a fresh process (run by bench/memory_startup.ts):
 * a bare Deno process, then PGlite opened on the data directory given as the first argument (new
 * when it does not exist yet; it is kept) and served like upbot's, then
 * the schema migrated, then 5 empty Workers (one isolate each, like the 5 actors). Prints one JSON
 * object of VmRSS figures in MB and the main isolate's `Deno.memoryUsage()`.
 */
import { startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { connect } from "../lib/db/connect.ts";
import { migrate } from "../lib/db/migrate.ts";

function rss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

const settle = () => new Promise((r) => setTimeout(r, 500));
const figures: Record<string, number> = {};
await settle();
figures.bare = rss();
const dir = Deno.args[0];
if (!dir) throw new Error("usage: _memory_probe.ts DATA_DIR");
const embedded = await startEmbeddedDatabase({ dataDir: dir });
await settle();
figures.pgliteOpen = rss();
const sql = connect({ kind: "embedded", ...embedded.endpoint });
await migrate(sql);
await settle();
figures.migrated = rss();
const workers: Worker[] = [];
for (let i = 0; i < 5; i++) {
  const w = new Worker(new URL("./actors/idle.ts", import.meta.url), { type: "module" });
  const ready = new Promise((r) => (w.onmessage = r));
  w.postMessage("hello");
  await ready;
  workers.push(w);
}
await settle();
figures.fiveWorkers = rss();
const heap = Deno.memoryUsage();
figures.mainHeapUsed = heap.heapUsed / 1048576;
figures.mainExternal = heap.external / 1048576;
for (const w of workers) w.terminate();
await sql.end({ timeout: 5 });
await embedded.close();
Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(figures) + "\n"));
