/**
 * @module Secret scan: upbot trades live on the simulator with known keys, an API token and the
 * embedded database's password, then every log line (main thread and workers, at debug level),
 * every row of every table and view (all columns, as text), every response of every GET route the
 * app declares, and every file under `DATA_DIR` (the database's binary files included) is searched
 * for those secrets and for any JWT. Zero hits. A companion test plants each secret in a scratch
 * copy of each source and checks that the same scanner finds every one, so the scan can fail.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../lib/config.ts";
import { openDatabase } from "../lib/db/connect.ts";
import { signToken } from "../lib/upbit/_jwt.ts";
import { type Simulator, startSimulator } from "../sim/mod.ts";
import { spawnDeno } from "../lib/subprocess.ts";
import { LIVE_ENV } from "./_upbot_rig.ts";

/** Any JWT (header and payload are base64url JSON objects, so both start with `eyJ`). */
const JWT_PATTERN = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\./;

/** One searchable text: where it came from, and its content (binary files as latin1). */
interface Source {
  where: string;
  text: string;
}

interface Hit {
  where: string;
  what: string;
}

/** Every (source, secret name) pair where a secret or a JWT occurs. */
function scan(sources: readonly Source[], secrets: Readonly<Record<string, string>>): Hit[] {
  const hits: Hit[] = [];
  for (const source of sources) {
    for (const [what, value] of Object.entries(secrets)) {
      if (source.text.includes(value)) hits.push({ where: source.where, what });
    }
    if (JWT_PATTERN.test(source.text)) hits.push({ where: source.where, what: "JWT" });
  }
  return hits;
}

/** Bytes as a latin1 string: an ASCII secret occurs in it exactly where its bytes occur. */
function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

/** Every file under `dir`, recursively, as a source. */
async function fileSources(dir: string): Promise<Source[]> {
  const out: Source[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...await fileSources(path));
    else if (entry.isFile) out.push({ where: path, text: latin1(await Deno.readFile(path)) });
  }
  return out;
}

/**
 * Every GET route declared in the HTTP code (`.get("/path", ...)` under lib/), so a route added
 * later is scanned too; a `:param` becomes `1`.
 */
async function declaredGetRoutes(): Promise<string[]> {
  const routes = new Set<string>();
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".ts")) {
        const text = await Deno.readTextFile(path);
        for (const m of text.matchAll(/\.get\(\s*["'`](\/[^"'`]*)["'`]/g)) {
          routes.add(m[1]!.replace(/:[A-Za-z_]+/g, "1"));
        }
      }
    }
  };
  await walk(new URL("../lib/", import.meta.url).pathname);
  return [...routes].sort();
}

/** Responses (status, headers, body) of every route, with and without the bearer token. */
async function httpSources(baseUrl: string, routes: string[], token: string): Promise<Source[]> {
  const out: Source[] = [];
  for (const route of routes) {
    for (const auth of [false, true]) {
      const res = await fetch(baseUrl + route, {
        headers: auth ? { Authorization: `Bearer ${token}` } : {},
      });
      const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
      out.push({
        where: `GET ${route}${auth ? " (with token)" : ""} -> ${res.status}`,
        text: `${headers}\n\n${await res.text()}`,
      });
    }
  }
  return out;
}

/** Every row of every table and view of the public schema, as `row::text`. */
async function tableSources(dataDir: string): Promise<Source[]> {
  const db = await openDatabase(parseConfig({ DATA_DIR: dataDir }));
  try {
    const tables = await db.sql<{ name: string }[]>`
      select table_name as name from information_schema.tables
      where table_schema = 'public' order by table_name`;
    const out: Source[] = [];
    for (const { name } of tables) {
      const rows = await db.sql.unsafe(`select t::text as row from "${name}" t`);
      out.push({
        where: `table ${name} (${rows.length} rows)`,
        text: rows.map((r) => r.row).join("\n"),
      });
    }
    return out;
  } finally {
    await db.close();
  }
}

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function until(
  what: () => string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** What one live run left behind, and the secrets it ran with. */
interface Run {
  secrets: Record<string, string>;
  dataDir: string;
  sources: { logs: Source[]; tables: Source[]; http: Source[]; files: Source[] };
  routes: string[];
  tableNames: string[];
  ordersDone: number;
}

/** Runs upbot live on the simulator until it has traded, stops it, and collects every source. */
async function liveRun(sim: Simulator, secrets: Record<string, string>): Promise<Run> {
  const dataDir = await Deno.makeTempDir({ prefix: "upbot_secrets_" });
  const recordFile = await Deno.makeTempFile({ prefix: "upbot_secrets_uuids_" });
  const proc = spawnDeno([
    "run",
    "--unstable-worker-options",
    "--allow-all",
    "tests/fixtures/upbot_recording_uuids.ts",
  ], {
    cwd: new URL("..", import.meta.url).pathname,
    env: {
      UUID_RECORD_FILE: recordFile,
      DATA_DIR: dataDir,
      HTTP_PORT: "0",
      LOG_LEVEL: "debug",
      LOG_FORMAT: "json",
      MARKETS: "KRW-BTC,KRW-ETH",
      UPBIT_REST_URL: sim.restUrl,
      UPBIT_WS_URL: sim.wsUrl,
      ...LIVE_ENV,
      UPBIT_ACCESS_KEY: secrets.accessKey!,
      UPBIT_SECRET_KEY: secrets.secretKey!,
      API_TOKEN: secrets.apiToken!,
    },
  });
  try {
    const listening = await proc.waitForLine(/HTTP server listening on/, 60_000);
    const baseUrl = /listening on (http:\/\/\S+?)["\s]/.exec(listening)![1]!;
    // The child writes the record as it draws; read it once it is whole.
    let drawn: string[] | undefined;
    for (let i = 0; i < 100 && drawn === undefined; i++) {
      try {
        drawn = JSON.parse(await Deno.readTextFile(recordFile)) as string[];
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(drawn, `${recordFile} never held a whole JSON record`);
    assert.equal(drawn.length, 1, "the embedded database's password is the one UUID drawn");
    secrets.dbPassword = drawn[0]!;
    // A market buy ends `cancel` with what it bought (as on Upbit), a market sell `done`.
    const done = () =>
      sim.orders().filter((o) => o.state !== "wait" && Number(o.executed_volume) > 0);
    await until(
      () =>
        `two live buys and two live sells filled; orders=${JSON.stringify(sim.orders())}\n${
          proc.lines.slice(-30).join("\n")
        }`,
      () =>
        done().filter((o) => o.side === "bid").length >= 2 &&
        done().filter((o) => o.side === "ask").length >= 2,
      40_000,
    );
    const routes = await declaredGetRoutes();
    const http = await httpSources(baseUrl, routes, secrets.apiToken!);
    const status = await proc.stop("SIGTERM");
    assert.equal(status.code, 0, proc.lines.slice(-20).join("\n"));
    const logs = proc.lines.map((line, i) => ({ where: `log line ${i + 1}`, text: line }));
    const tables = await tableSources(dataDir);
    const files = await fileSources(dataDir);
    return {
      secrets,
      dataDir,
      sources: { logs, tables, http, files },
      routes,
      tableNames: tables.map((t) => t.where),
      ordersDone: done().length,
    };
  } finally {
    await proc.stop("SIGKILL");
    await Deno.remove(recordFile);
  }
}

Deno.test("secret scan: live run on the simulator leaves no key, token, password or JWT anywhere", async (t) => {
  const secrets: Record<string, string> = {
    accessKey: `AKscan${randomHex(12)}`,
    secretKey: `SKscan${randomHex(16)}`,
    apiToken: `TOKscan${randomHex(12)}`,
  };
  const sim = await startSimulator({
    seed: 5,
    markets: ["KRW-BTC", "KRW-ETH"],
    rate: 200,
    accessKey: secrets.accessKey,
    secretKey: secrets.secretKey,
  });
  let run: Run | undefined;
  try {
    run = await liveRun(sim, secrets);
  } finally {
    await sim.close();
  }
  try {
    const { sources } = run;
    const all = [...sources.logs, ...sources.tables, ...sources.http, ...sources.files];

    await t.step("the sources are not empty (the scan looked at something real)", () => {
      assert.ok(run!.ordersDone >= 4);
      assert.ok(sources.logs.length > 20, `${sources.logs.length} log lines`);
      assert.ok(
        sources.logs.some((s) => s.text.includes('"actor":"executor"')),
        "worker lines are captured",
      );
      assert.ok(run!.routes.includes("/healthz") && run!.routes.includes("/api/actors"));
      for (const table of ["upbit_order_attempts", "paper_trades", "upbit_order_snapshots"]) {
        const source = sources.tables.find((s) => s.where.startsWith(`table ${table} `));
        assert.ok(source && source.text.length > 0, `${table} has rows`);
      }
      assert.ok(
        sources.files.some((s) => s.where.includes("pgdata")),
        "the database's files are scanned",
      );
    });

    await t.step("zero hits", () => {
      assert.deepEqual(scan(all, run!.secrets), []);
    });

    await t.step("the scanner finds each planted secret in each kind of source", async () => {
      const s = run!.secrets;
      // A planted binary file: the password between arbitrary bytes.
      const planted = join(run!.dataDir, "pgdata", "planted.bin");
      const pw = new TextEncoder().encode(s.dbPassword!);
      await Deno.writeFile(planted, new Uint8Array([0, 255, 7, ...pw, 0, 1]));
      const jwt = await signToken({ accessKey: s.accessKey!, secretKey: s.secretKey! });
      const scratch = [
        ...sources.logs,
        { where: "planted log line", text: JSON.stringify({ msg: "oops", key: s.secretKey }) },
        ...sources.tables,
        { where: "planted row", text: `(1,"{""token"": ""${s.apiToken}""}")` },
        ...sources.http,
        { where: "planted response", text: `{"auth":"Bearer ${jwt}"}` },
        ...await fileSources(run!.dataDir),
      ];
      assert.deepEqual(
        scan(scratch, s).map((h) => `${h.where}: ${h.what}`).sort(),
        [
          `${planted}: dbPassword`,
          "planted log line: secretKey",
          "planted response: JWT",
          "planted row: apiToken",
        ].sort(),
      );
    });
  } finally {
    await Deno.remove(run.dataDir, { recursive: true });
  }
});
