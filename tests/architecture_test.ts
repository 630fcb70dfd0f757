/**
 * The layer rules of `docs/architecture.md`, as code: every relative import of upbot's own sources
 * (not tests or benchmarks) stays within what its folder may import. A new upward import fails
 * here with the file and the import named. Also: the actor runtime (`lib/actors/`) is generic (it
 * imports only the shared base modules), and each worker entry in `actors/` names, in its first
 * line, the `lib/` module that holds its logic.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

const SHARED = [
  "lib/domain.ts",
  "lib/log.ts",
  "lib/decimal.ts",
  "lib/backoff.ts",
  "lib/random.ts",
  "lib/env_file.ts",
  "lib/subprocess.ts",
];
const LAYER1 = [
  ...SHARED,
  "lib/config.ts",
  "lib/upbit/",
  "lib/strategy/",
  "lib/db/",
  "lib/actors/",
];
const LAYER2 = [...LAYER1, "lib/store/", "lib/control/"];
const LAYER3 = [...LAYER2, "lib/execution/"];

/** Each unit (a folder ending in `/`, or one file) and what it may import besides itself. */
const ALLOWED: [unit: string, mayImport: string[]][] = [
  ...SHARED.map((m): [string, string[]] => [m, SHARED]),
  ["lib/config.ts", SHARED],
  ["lib/upbit/", SHARED],
  ["lib/strategy/", [...SHARED, "lib/config.ts"]],
  ["lib/db/", [...SHARED, "lib/config.ts"]],
  // Generic: upbot's messages and rules are given to it by lib/pipeline/.
  ["lib/actors/", SHARED],
  // Debt: order_attempts.ts uses the order state machine of lib/execution/.
  ["lib/store/", [...LAYER1, "lib/execution/order_state.ts"]],
  ["lib/control/", LAYER1],
  ["lib/execution/", LAYER2],
  // The feed actor records trades in the backtest's own file format (lib/backtest/trade_files.ts).
  ["lib/pipeline/", [...LAYER3, "lib/backtest/trade_files.ts"]],
  ["lib/http/", LAYER3],
  // Debt: the app version comes from deno.json.
  ["lib/backtest/", [...LAYER2, "deno.json"]],
  // The crash suite drives upbot from outside, like a tool, and judges it by the store's tables.
  ["lib/chaos/", LAYER3],
  ["lib/upbot.ts", ["lib/"]],
  ["lib/cli.ts", ["lib/"]],
  ["main.ts", ["lib/"]],
  // Thin worker entries: the actor's definition and upbot's runtime, both in lib/pipeline/.
  ["actors/", ["lib/pipeline/"]],
  ["tools/", ["lib/", "sim/", "deno.json"]],
  ["sim/", ["lib/domain.ts", "lib/log.ts", "lib/decimal.ts", "lib/random.ts"]],
];

function unitOf(path: string): string | undefined {
  const units = ALLOWED.map(([unit]) => unit).filter((u) => path === u || path.startsWith(u));
  return units.sort((a, b) => b.length - a.length)[0];
}

function allowed(from: string, to: string): boolean {
  const unit = unitOf(from);
  if (unit === undefined) return false;
  if (to === unit || (unit.endsWith("/") && to.startsWith(unit))) return true;
  const rules = ALLOWED.find(([u]) => u === unit)![1];
  return rules.some((r) => to === r || (r.endsWith("/") && to.startsWith(r)));
}

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(new URL(dir, ROOT))) {
    const path = dir === "" ? e.name : `${dir}${e.name}`;
    if (e.isDirectory && ["lib", "sim", "actors", "tools"].some((d) => path.startsWith(d))) {
      yield* sources(`${path}/`);
    } else if (e.isFile && /\.tsx?$/.test(e.name) && (dir !== "" || e.name === "main.ts")) {
      yield path;
    }
  }
}

/** Relative module specifiers of the static imports and re-exports of a source text. */
export function importsOf(text: string): string[] {
  const found = text.matchAll(
    /^\s*(?:import|export)\b[^;]*?\bfrom\s+"(\.[^"]+)"|^\s*import\s+"(\.[^"]+)"/gm,
  );
  return [...found].map((m) => m[1] ?? m[2]!);
}

function resolve(from: string, specifier: string): string {
  return new URL(specifier, new URL(from, ROOT)).pathname.slice(ROOT.pathname.length);
}

Deno.test("importsOf() finds static imports and re-exports, not doc comments", () => {
  const text = [
    `import { a } from "./a.ts";`,
    `import {\n  b,\n  c,\n} from "../b.ts";`,
    `export { d } from "./d.ts";`,
    ` * import { e } from "../e.ts";`,
    `import "./f.ts";`,
  ].join("\n");
  assert.deepEqual(importsOf(text), ["./a.ts", "../b.ts", "./d.ts", "./f.ts"]);
});

Deno.test("the layer table refuses an upward import", () => {
  assert.equal(allowed("lib/upbit/rest.ts", "lib/execution/executor.ts"), false);
  assert.equal(allowed("sim/exchange.ts", "lib/upbit/rest.ts"), false);
  assert.equal(allowed("lib/store/paper_trades.ts", "lib/pipeline/feed.ts"), false);
  assert.equal(allowed("lib/execution/executor.ts", "lib/store/order_attempts.ts"), true);
  assert.equal(allowed("lib/db/lease.ts", "lib/store/order_attempts.ts"), false);
  assert.equal(allowed("lib/actors/actor.ts", "lib/pipeline/messages.ts"), false);
  assert.equal(allowed("lib/actors/supervisor.ts", "lib/upbit/rest.ts"), false);
  assert.equal(allowed("lib/actors/actor.ts", "lib/log.ts"), true);
  assert.equal(allowed("actors/feed.ts", "lib/upbit/rest.ts"), false);
});

Deno.test("no import of upbot's sources runs upward (docs/architecture.md)", async () => {
  const problems: string[] = [];
  let checked = 0;
  for await (const path of sources("")) {
    const text = await Deno.readTextFile(new URL(path, ROOT));
    for (const specifier of importsOf(text)) {
      checked++;
      const target = resolve(path, specifier);
      if (!allowed(path, target)) problems.push(`${path} imports ${target}`);
    }
  }
  assert.ok(checked > 200, `only ${checked} imports found`);
  assert.deepEqual(problems, []);
});

/** The `lib/` module a worker entry's first line names as holding its logic, or undefined. */
export function logicModuleOf(firstLine: string): string | undefined {
  return /^\/\*\* @module Worker entry of the \w+ actor; its logic is in (lib\/[\w/]+\.ts)\./
    .exec(firstLine)?.[1];
}

Deno.test("logicModuleOf() reads the module a worker entry's first line names", () => {
  assert.equal(
    logicModuleOf(
      "/** @module Worker entry of the feed actor; its logic is in lib/pipeline/feed_actor.ts. */",
    ),
    "lib/pipeline/feed_actor.ts",
  );
  assert.equal(logicModuleOf("/**"), undefined);
  assert.equal(logicModuleOf("/** @module The feed actor: trades -> bars. */"), undefined);
});

Deno.test("each worker entry in actors/ names, in its first line, an existing lib/ module", async () => {
  const problems: string[] = [];
  let entries = 0;
  for await (const e of Deno.readDir(new URL("actors/", ROOT))) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    entries++;
    const text = await Deno.readTextFile(new URL(`actors/${e.name}`, ROOT));
    const target = logicModuleOf(text.split("\n")[0]!);
    if (target === undefined) {
      problems.push(`actors/${e.name}: first line does not name its lib/ module`);
      continue;
    }
    const stat = await Deno.stat(new URL(target, ROOT)).catch(() => null);
    if (!stat?.isFile) problems.push(`actors/${e.name}: ${target} does not exist`);
    else if (!importsOf(text).some((s) => resolve(`actors/${e.name}`, s) === target)) {
      problems.push(`actors/${e.name}: does not import ${target}`);
    }
  }
  assert.ok(entries >= 5, `only ${entries} worker entries found`);
  assert.deepEqual(problems, []);
});
