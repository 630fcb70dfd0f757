/**
 * @module Tests of `deno task compile` that can run without building the binary (building needs
 * Deno's runtime base from the network): every module loaded by a Worker or by URL is in the
 * `--include` list, every folder the code reads through `import.meta` is included, and upbot starts
 * from a copy holding only what the binary would hold (the entry's module graph, the included
 * modules' graphs and the included folders), run from an empty working directory.
 */
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { fileURLToPath as fromFileUrl, pathToFileURL as toFileUrl } from "node:url";
import { loadConfig } from "../lib/config.ts";
import { pipelineActorSpecs } from "../lib/pipeline/actor_specs.ts";
import { startSimulator } from "../sim/mod.ts";
import { freePort, spawnDeno } from "../lib/subprocess.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url));
/** Source folders whose files ship in the binary (tests, tools, bench and sim do not). */
const SHIPPED = ["main.ts", "lib", "actors"];
/**
 * Folders of `lib/` that are never in the binary: the crash suite runs a repository checkout
 * (it spawns `main.ts` and `sim/main.ts` from it). A test below checks main.ts never reaches them.
 */
const NOT_SHIPPED = ["lib/chaos"];

interface CompileTask {
  entry: string;
  includes: string[];
  flags: string[];
}

async function compileTask(): Promise<CompileTask> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const task = config.tasks?.compile;
  assert.equal(typeof task, "string", "deno.json has no compile task");
  const words = (task as string).trim().split(/\s+/);
  assert.deepEqual(words.slice(0, 2), ["deno", "compile"]);
  const includes: string[] = [];
  const flags: string[] = [];
  for (let i = 2; i < words.length - 1; i++) {
    if (words[i] === "--include") includes.push(words[++i]!);
    else if (words[i] === "--output") i++;
    else flags.push(words[i]!);
  }
  return { entry: words.at(-1)!, includes, flags };
}

/** Whether `file` (relative to the root) is an included path or lies in an included folder. */
function isIncluded(includes: string[], file: string): boolean {
  return includes.some((inc) =>
    inc.endsWith("/") ? file.startsWith(inc) : file === inc || file.startsWith(inc + "/")
  );
}

async function* sourceFiles(path: string): AsyncGenerator<string> {
  if (NOT_SHIPPED.includes(path)) return;
  const stat = await Deno.stat(join(ROOT, path));
  if (stat.isFile) {
    if (/\.tsx?$/.test(path)) yield path;
    return;
  }
  for await (const entry of Deno.readDir(join(ROOT, path))) {
    yield* sourceFiles(`${path}/${entry.name}`);
  }
}

/** Every `new URL("<literal>", import.meta.url)` in the shipped sources, relative to the root. */
async function importMetaUrls(): Promise<{ from: string; target: string }[]> {
  const out: { from: string; target: string }[] = [];
  const pattern = /new URL\(\s*"([^"]+)"\s*,\s*import\.meta\.url\s*\)/g;
  for (const top of SHIPPED) {
    for await (const file of sourceFiles(top)) {
      const code = (await Deno.readTextFile(join(ROOT, file)))
        .split("\n")
        .filter((line) => !/^\s*(\*|\/\*|\/\/)/.test(line)) // examples in comments load nothing
        .join("\n");
      for (const m of code.matchAll(pattern)) {
        const abs = new URL(m[1]!, toFileUrl(join(ROOT, file)));
        let target = relative(ROOT, fromFileUrl(abs));
        if (m[1]!.endsWith("/")) target += "/";
        out.push({ from: file, target });
      }
    }
  }
  return out;
}

Deno.test("compile task: runs main.ts with start's permissions and worker options", async () => {
  const task = await compileTask();
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  assert.equal(task.entry, "main.ts");
  for (const flag of ["--unstable-worker-options", "--allow-all"]) {
    assert.ok(config.tasks.start.includes(flag), `start has ${flag}`);
    assert.ok(task.flags.includes(flag), `compile has ${flag}`);
  }
  for (const inc of task.includes) {
    await Deno.stat(join(ROOT, inc)); // throws NotFound for a stale entry
  }
});

/** The `--v8-flags=...` words of a task (deno.json), in order. */
function v8Flags(task: string): string[] {
  return task.split(/\s+/).filter((w) => w.startsWith("--v8-flags="));
}

Deno.test("compile task and demo run with start's V8 flags (embedded in the binary)", async () => {
  const { tasks } = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const start = v8Flags(tasks.start);
  // The memory settings of docs/operations.md: a binary or demo without them uses more memory.
  assert.ok(start.length === 1, tasks.start);
  assert.match(start[0]!, /--max-semi-space-size=\d+/);
  assert.match(start[0]!, /--heap-growing-percent=\d+/);
  assert.deepEqual(v8Flags(tasks.compile), start, "compile");
  assert.deepEqual(v8Flags(tasks.demo), start, "demo");
});

Deno.test("compile task: every actor module and every actors/*.ts file is included", async () => {
  const { includes } = await compileTask();
  const config = loadConfig({ env: {}, envFile: join(ROOT, "no-such.env") });
  const specs = pipelineActorSpecs(config, { kind: "url", url: "postgres://db:5432/upbot" });
  assert.ok(specs.length >= 5);
  for (const spec of specs) {
    const file = relative(ROOT, fromFileUrl(spec.module));
    assert.ok(isIncluded(includes, file), `actor ${spec.name}: ${file} is not in --include`);
  }
  for await (const file of sourceFiles("actors")) {
    assert.ok(isIncluded(includes, file), `${file} is not in --include`);
  }
});

Deno.test("compile task: every module or folder reached through import.meta.url is included", async () => {
  const { includes } = await compileTask();
  const urls = await importMetaUrls();
  // migrate.ts's folder and the actors folder at least; a new one must be added to the task.
  assert.ok(urls.some((u) => u.target === "migrations/"), JSON.stringify(urls));
  assert.ok(urls.some((u) => u.target === "actors/"), JSON.stringify(urls));
  // The PGlite template a new data directory is written from (lib/db/pglite_template.ts).
  assert.ok(urls.some((u) => u.target === "lib/db/pglite_template.tar.gz"), JSON.stringify(urls));
  for (const { from, target } of urls) {
    if (target === "actors/") continue; // the folder of the actor modules, checked one by one above
    if (target.endsWith("/") || /\.(tsx?|js|sql|json|gz)$/.test(target)) {
      assert.ok(isIncluded(includes, target), `${from} loads ${target}, not in --include`);
    }
  }
});

Deno.test("compile task: main.ts never reaches a folder left out of the binary", async () => {
  const graph = await moduleGraph("main.ts");
  assert.ok(graph.length > 20, `module graph of main.ts: ${graph.length} files`);
  for (const folder of NOT_SHIPPED) {
    assert.deepEqual(graph.filter((f) => f.startsWith(folder + "/")), [], folder);
  }
});

/** Local files of the module graph of `file` (relative to the root). */
async function moduleGraph(file: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", file],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout));
  const rootUrl = toFileUrl(ROOT).href;
  return (info.modules as { specifier: string }[])
    .map((m) => m.specifier)
    .filter((s) => s.startsWith(rootUrl))
    .map((s) => relative(ROOT, fromFileUrl(s)));
}

async function copyInto(dest: string, file: string): Promise<void> {
  await Deno.mkdir(dirname(join(dest, file)), { recursive: true });
  await Deno.copyFile(join(ROOT, file), join(dest, file));
}

async function copyTree(dest: string, path: string): Promise<void> {
  const stat = await Deno.stat(join(ROOT, path));
  if (stat.isFile) return await copyInto(dest, path);
  for await (const entry of Deno.readDir(join(ROOT, path))) {
    await copyTree(dest, join(path, entry.name));
  }
}

Deno.test("upbot starts from only what the binary holds, in an empty working directory", async () => {
  const { entry, includes } = await compileTask();
  const app = await Deno.makeTempDir({ prefix: "upbot_vfs_" });
  const cwd = await Deno.makeTempDir({ prefix: "upbot_cwd_" });
  const sim = await startSimulator({ seed: 3, markets: ["KRW-BTC"], rate: 50 });
  let proc: ReturnType<typeof spawnDeno> | undefined;
  try {
    // deno.json and deno.lock are read at build time only (import map, locked versions).
    for (const file of ["deno.json", "deno.lock"]) await copyInto(app, file);
    const roots = [entry, ...includes.filter((inc) => /\.tsx?$/.test(inc))];
    for (const root of roots) {
      for (const file of await moduleGraph(root)) await copyInto(app, file);
    }
    for (const inc of includes.filter((inc) => !/\.tsx?$/.test(inc))) await copyTree(app, inc);

    const port = freePort();
    proc = spawnDeno(
      ["run", "--cached-only", "--unstable-worker-options", "--allow-all", join(app, entry)],
      {
        cwd,
        env: {
          DATA_DIR: join(cwd, "data"),
          HTTP_PORT: String(port),
          LOG_FORMAT: "json",
          MARKETS: "KRW-BTC",
          UPBIT_REST_URL: sim.restUrl,
          UPBIT_WS_URL: sim.wsUrl,
          UPBIT_ACCESS_KEY: sim.accessKey,
          UPBIT_SECRET_KEY: sim.secretKey,
        },
      },
    );
    const running = proc;
    await Promise.race([
      running.waitForLine(/HTTP server listening/),
      running.exited().then((status) => {
        throw new Error(`upbot exited with ${status.code}:\n${running.lines.join("\n")}`);
      }),
    ]);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200, await health.text());
    // Every actor's module loaded from the copy and reached `running`.
    let states: Record<string, string> = {};
    for (let i = 0; i < 150; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/api/actors`);
      const actors = (await res.json()) as { name: string; state: string }[];
      states = Object.fromEntries(actors.map((a) => [a.name, a.state]));
      if (actors.length >= 5 && actors.every((a) => a.state === "running")) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const name of ["feed", "evaluator", "executor", "order_poller", "account"]) {
      assert.equal(states[name], "running", `${name}: ${JSON.stringify(states)}`);
    }
    const status = await proc.stop("SIGTERM");
    assert.equal(status.code, 0, proc.lines.join("\n"));
    // The embedded migrations folder was read: every file applied on the new database.
    const applied = proc.lines.filter((l) => /Applied migration \d{3}_/.test(l)).length;
    let files = 0;
    for await (const f of Deno.readDir(join(ROOT, "migrations"))) {
      if (f.name.endsWith(".sql")) files++;
    }
    assert.equal(applied, files, proc.lines.join("\n"));
  } finally {
    await proc?.stop("SIGKILL").catch(() => {});
    await sim.close();
    await Deno.remove(app, { recursive: true });
    await Deno.remove(cwd, { recursive: true });
  }
});
