/**
 * @module What one Worker isolate costs, by what it loads: for each target (nothing, an npm
 * package, an actor module), a fresh process starts `n` Workers (`bench/actors/load_module.ts`)
 * that import it and wait (an actor module is loaded, never started), then prints the resident
 * memory each Worker added and the Worker's own `Deno.memoryUsage()` after a full GC. Run it with
 * the V8 flags to compare, e.g. `--v8-flags=--max-semi-space-size=1`; asserts nothing.
 *
 * Usage: deno run -A bench/isolate_memory.ts [n=3]
 */
import { out, rssMb, sleep } from "./_harness.ts";

const ROOT = new URL("../", import.meta.url);

/** What each line loads ("" nothing: the cost of an isolate alone). */
export const TARGETS: string[] = [
  "",
  "npm:zod@4.6.7",
  "npm:postgres@3.4.9",
  "npm:@electric-sql/pglite@0.5.14",
  "npm:hono@4.13.19",
  new URL("lib/actors/actor.ts", ROOT).href,
  new URL("lib/db/connect.ts", ROOT).href,
  ...["feed", "evaluator", "executor", "order_poller", "account"].map((a) =>
    new URL(`actors/${a}.ts`, ROOT).href
  ),
  new URL("main.ts", ROOT).href,
];

/** In the child: `n` Workers loading `target`. */
async function child(target: string, n: number): Promise<void> {
  await sleep(300);
  const before = rssMb();
  const workers: Worker[] = [];
  let usage: Record<string, number> = {};
  const loadMs: number[] = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker(new URL("./actors/load_module.ts", import.meta.url), { type: "module" });
    const answer = new Promise<Record<string, number>>((r) => (w.onmessage = (e) => r(e.data)));
    w.postMessage(target);
    usage = await answer;
    loadMs.push(usage.loadMs!);
    workers.push(w);
  }
  await sleep(300);
  const mb = (x: number) => (x / 1048576).toFixed(1);
  const name = target === "" ? "(empty Worker)" : target.replace(ROOT.href, "");
  out(
    `${name.padEnd(32)} +${((rssMb() - before) / n).toFixed(1)} MB resident per Worker; heap used ${
      mb(usage.heapUsed!)
    } MB of ${mb(usage.heapTotal!)} MB, external ${mb(usage.external!)} MB; loaded in ${
      loadMs.map((ms) => ms.toFixed(0)).join(", ")
    } ms`,
  );
  Deno.exit(0);
}

if (import.meta.main) {
  if (Deno.args[0] === "--child") {
    await child(Deno.args[1]!, Number(Deno.args[2]));
  } else {
    const n = Number(Deno.args[0] ?? 3);
    for (const target of TARGETS) {
      const res = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          // The flags of this process (e.g. --max-semi-space-size), plus gc for the heap figures.
          `--v8-flags=${["--expose-gc", ...v8FlagsOfThisProcess()].join(",")}`,
          new URL(import.meta.url).pathname,
          "--child",
          target,
          String(n),
        ],
        cwd: new URL(".", ROOT).pathname,
        stdout: "inherit",
        stderr: "inherit",
      }).output();
      if (!res.success) throw new Error(`child for ${target || "(empty)"} failed`);
    }
  }
}

/** The --v8-flags given to this process, from /proc/self/cmdline. */
function v8FlagsOfThisProcess(): string[] {
  const argv = Deno.readTextFileSync("/proc/self/cmdline").split("\0");
  return argv.filter((a) => a.startsWith("--v8-flags=")).flatMap((a) =>
    a.slice("--v8-flags=".length).split(",")
  ).filter((f) => f !== "");
}
