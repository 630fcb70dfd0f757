/**
 * @module PGlite's resident memory under different settings, each in a fresh process on the same
 * existing data directory (created first): what a setting of `PGlite.create` would save in
 * upbot's embedded database. Prints one line per variant; asserts nothing.
 *
 * Usage: deno run -A bench/pglite_memory.ts
 */
import { PGlite, type PGliteOptions } from "@electric-sql/pglite";

/** The variants tried (options on top of `dataDir`). */
export const VARIANTS: Record<string, PGliteOptions> = {
  "default": {},
  "shared_buffers 16MB": { postgresqlconf: "shared_buffers = 16MB" },
  "shared_buffers 16MB, wal_buffers 1MB": {
    postgresqlconf: "shared_buffers = 16MB\nwal_buffers = 1MB",
  },
  // initialMemory cannot go below the 128 MB the WebAssembly module declares.
};

function rss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

/** In the child: open PGlite with one variant, run a small workload, print the RSS growth. */
async function child(dir: string, variant: string): Promise<void> {
  const before = rss();
  const db = await PGlite.create({ dataDir: dir, ...VARIANTS[variant] });
  await db.exec(`create table if not exists probe (id int primary key, v text)`);
  await db.exec(`insert into probe select g, repeat('x', 100) from generate_series(1, 50000) g
    on conflict (id) do update set v = excluded.v`);
  await db.query(`select count(*), max(length(v)) from probe`);
  const after = rss();
  await db.close();
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify({ before, after }) + "\n"));
}

/** In the parent: one child per variant; returns the RSS each added, in MB. */
export async function benchPgliteMemory(): Promise<Record<string, number>> {
  const dir = await Deno.makeTempDir({ prefix: "upbot_pglite_mem_" });
  const run = async (variant: string) => {
    const res = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, "--child", dir, variant],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const line = new TextDecoder().decode(res.stdout).trim().split("\n").at(-1)!;
    const { before, after } = JSON.parse(line);
    return after - before;
  };
  try {
    await run("default"); // creates the data directory (initdb) once
    const out: Record<string, number> = {};
    for (const variant of Object.keys(VARIANTS)) out[variant] = await run(variant);
    return out;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  if (Deno.args[0] === "--child") {
    await child(Deno.args[1]!, Deno.args[2]!);
  } else {
    for (const [variant, mb] of Object.entries(await benchPgliteMemory())) {
      Deno.stdout.writeSync(
        new TextEncoder().encode(`${variant.padEnd(22)} +${mb.toFixed(0)} MB resident\n`),
      );
    }
  }
}
