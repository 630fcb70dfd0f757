/**
 * @module `deno task chaos`: the crash suite (lib/chaos/crash_suite.ts). upbot runs live against
 * the simulator with faults on and is killed with SIGKILL at seeded random moments, then the
 * database is checked against the exchange; prints a table and exits 1 on any violation.
 *
 * ```sh
 * deno task chaos [--kills 20] [--seed 1] [--min-up-ms 3000] [--max-up-ms 15000]
 * DATABASE_URL=postgres://…/empty_db deno task chaos   # on PostgreSQL instead of PGlite
 * ```
 *
 * Exit codes: 0 every check passed, 1 a check failed, 2 bad usage.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { formatCheckTable } from "../lib/chaos/checks.ts";
import { runCrashSuite } from "../lib/chaos/crash_suite.ts";

const Args = z.object({
  kills: z.coerce.number().int().min(1).max(1000).default(20),
  seed: z.coerce.number().int().min(0).max(2 ** 31 - 1).default(1),
  "min-up-ms": z.coerce.number().int().min(0).default(3_000),
  "max-up-ms": z.coerce.number().int().min(1).default(15_000),
});

const print = (text: string) => Deno.stdout.writeSync(new TextEncoder().encode(text + "\n"));

async function main(): Promise<number> {
  let args;
  try {
    const { values } = parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        kills: { type: "string" },
        seed: { type: "string" },
        "min-up-ms": { type: "string" },
        "max-up-ms": { type: "string" },
      },
    });
    args = Args.parse(values);
    if (args["max-up-ms"] < args["min-up-ms"]) throw new Error("--max-up-ms is below --min-up-ms");
  } catch (err) {
    print(`chaos: ${err instanceof z.ZodError ? err.issues[0]?.message : String(err)}`);
    print("usage: deno task chaos [--kills N] [--seed N] [--min-up-ms MS] [--max-up-ms MS]");
    return 2;
  }
  const databaseUrl = Deno.env.get("DATABASE_URL") || undefined;
  print(
    `crash suite: ${args.kills} kills, seed ${args.seed}, up ${args["min-up-ms"]}-${
      args["max-up-ms"]
    } ms, ${databaseUrl ? "PostgreSQL (DATABASE_URL)" : "embedded PGlite"}`,
  );
  const report = await runCrashSuite({
    kills: args.kills,
    seed: args.seed,
    upMs: [args["min-up-ms"], args["max-up-ms"]],
    databaseUrl,
    progress: (line) => print(`  ${line}`),
  });
  print(
    `${report.kills} kills (${report.killsDuringStartup} during start-up), ${report.exchangeOrders} exchange orders, ${report.seconds} s; logs in ${report.workDir}`,
  );
  print(formatCheckTable(report.results));
  return report.ok ? 0 : 1;
}

Deno.exit(await main());
