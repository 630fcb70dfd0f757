/**
 * A first `deno task start` / `deno task demo` on an empty Deno cache prints no warning. `deno task`
 * installs every npm package of `deno.lock` before it runs anything, so the lockfile holds only
 * what upbot and its ordinary tests use: ccxt (the third-party reference client of one test and
 * one benchmark) and its dependencies, whose build scripts Deno ignores with a warning, are locked
 * in `deno.test.lock`, which `deno task test`, `check` and `bench` use. `.ci/run` also starts upbot
 * and the demo on an empty cache and fails on any Deno warning.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const FIX = "Run the ccxt test, `deno check tests/` or the bench with --lock=deno.test.lock " +
  "(deno task test / check / bench do), then `git checkout deno.lock`.";

interface Lockfile {
  specifiers: Record<string, string>;
  npm: Record<string, { integrity: string; scripts?: boolean }>;
}

async function lockfile(name: string): Promise<Lockfile> {
  return JSON.parse(await Deno.readTextFile(new URL(name, ROOT)));
}

Deno.test("deno.lock holds no npm package with build scripts (Deno would warn on first run)", async () => {
  const lock = await lockfile("deno.lock");
  const scripted = Object.entries(lock.npm).filter(([, p]) => p.scripts).map(([id]) => id);
  assert.deepEqual(scripted, [], FIX);
  assert.ok(!Object.keys(lock.specifiers).some((s) => s.startsWith("npm:ccxt@")), FIX);
  // The test lockfile is where they belong: it has them, so the check above is not vacuous.
  const testLock = await lockfile("deno.test.lock");
  assert.ok(Object.values(testLock.npm).some((p) => p.scripts), "deno.test.lock has ccxt's deps");
});

Deno.test("deno.test.lock locks everything deno.lock does, identically", async () => {
  const lock = await lockfile("deno.lock");
  const testLock = await lockfile("deno.test.lock");
  for (const [specifier, version] of Object.entries(lock.specifiers)) {
    assert.equal(testLock.specifiers[specifier], version, specifier);
  }
  for (const [id, entry] of Object.entries(lock.npm)) {
    assert.deepEqual(testLock.npm[id], entry, id);
  }
});

Deno.test("the tasks that reach ccxt use deno.test.lock; start and demo use deno.lock", async () => {
  const tasks: Record<string, string> =
    JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks;
  assert.match(tasks.typecheck!, /^deno check --lock=deno\.test\.lock /, "task typecheck");
  for (const name of ["test", "check", "bench"]) {
    // Every command of the task that loads modules; `deno task typecheck` is checked above.
    const commands = tasks[name]!.split("&&").map((c) => c.trim())
      .filter((c) => /^deno (check|test|run)\b/.test(c));
    for (const command of commands) {
      assert.match(command, /--lock=deno\.test\.lock /, `task ${name}: ${command}`);
    }
    assert.ok(
      commands.length > 0 || tasks[name]!.includes("deno task typecheck"),
      `task ${name} loads modules`,
    );
  }
  for (const name of ["start", "demo"]) {
    assert.doesNotMatch(tasks[name]!, /--lock/, `task ${name}`);
  }
});

Deno.test("upbot's own module graph reaches no test-only npm package", async () => {
  const entries = ["main.ts", "tools/demo.ts", "tools/control.ts", "lib/backtest/sweep_worker.ts"];
  for await (const e of Deno.readDir(new URL("actors/", ROOT))) {
    if (e.isFile && e.name.endsWith(".ts")) entries.push(`actors/${e.name}`);
  }
  for (const entry of entries) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { specifier: string }[];
    };
    const npm = graph.modules.map((m) => m.specifier).filter((s) => s.startsWith("npm:"));
    assert.ok(npm.length > 0, `${entry} has npm imports`);
    for (const name of ["ccxt", "playwright-core"]) {
      assert.deepEqual(npm.filter((s) => s.startsWith(`npm:/${name}@`)), [], `${entry}: ${name}`);
    }
  }
});
