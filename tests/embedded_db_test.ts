import assert from "node:assert/strict";
import { join } from "node:path";
import { connect, type DbConnection } from "../lib/db/connect.ts";
import { DataDirLockedError, startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { setLogSink } from "../lib/log.ts";

interface WorkerReport {
  type: string;
  tag: string;
  seen?: string[];
}

function runTxWorker(
  connection: DbConnection,
  job: { tag: string; holdMs: number; rollback: boolean },
  onInserted?: () => void,
): Promise<WorkerReport> {
  const worker = new Worker(new URL("./fixtures/db_tx_worker.ts", import.meta.url), {
    type: "module",
  });
  return new Promise((resolve, reject) => {
    worker.onerror = (e) => {
      e.preventDefault();
      worker.terminate();
      reject(new Error(e.message));
    };
    worker.onmessage = (e: MessageEvent<WorkerReport>) => {
      if (e.data.type === "inserted") onInserted?.();
      if (e.data.type === "done") {
        worker.terminate();
        resolve(e.data);
      }
    };
    worker.postMessage({ connection, ...job });
  });
}

Deno.test("embedded database: two workers' transactions do not see or undo each other", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null });
  const connection: DbConnection = { kind: "embedded", ...db.endpoint };
  const sql = connect(connection);
  try {
    await sql`create table tx_probe (tag text primary key)`;
    // Worker A inserts and holds its transaction open, then rolls back; B starts meanwhile.
    const { promise: aInserted, resolve } = Promise.withResolvers<void>();
    const a = runTxWorker(connection, { tag: "a", holdMs: 400, rollback: true }, resolve);
    await aInserted;
    const b = runTxWorker(connection, { tag: "b", holdMs: 0, rollback: false });
    const [ra, rb] = await Promise.all([a, b]);
    assert.deepEqual(ra.seen, ["a"], "A sees only its own row");
    assert.deepEqual(rb.seen, ["b"], "B never sees A's uncommitted (later rolled back) row");
    const rows = await sql`select tag from tx_probe order by tag`;
    assert.deepEqual(rows.map((r) => r.tag), ["b"], "A's rollback did not undo B's commit");
  } finally {
    await sql.end();
    await db.close();
  }
});

Deno.test("embedded database: persists under DATA_DIR and refuses a second process", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_embedded_" });
  try {
    const first = await startEmbeddedDatabase({ dataDir: dir });
    const sql = connect({ kind: "embedded", ...first.endpoint });
    await sql`create table keep (v numeric)`;
    await sql`insert into keep values (${"12345678901234.12345678"})`;
    await sql.end();

    // A second process on the same DATA_DIR must get a clear error (the lock is per process,
    // so probe it from a subprocess).
    const probe = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { startEmbeddedDatabase } from ${
          JSON.stringify(new URL("../lib/db/embedded_db.ts", import.meta.url).href)
        };
         try { await startEmbeddedDatabase({ dataDir: ${JSON.stringify(dir)} }); Deno.exit(0); }
         catch (e) { await Deno.stderr.write(new TextEncoder().encode(e.name + ": " + e.message)); Deno.exit(3); }`,
      ],
      stdout: "piped",
      stderr: "piped",
    });
    const out = await probe.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 3);
    assert.match(stderr, /DataDirLockedError: DATA_DIR .* is in use by another upbot process/);

    await first.close();
    const again = await startEmbeddedDatabase({ dataDir: dir });
    const sql2 = connect({ kind: "embedded", ...again.endpoint });
    const [row] = await sql2`select v from keep`;
    assert.equal(row?.v, "12345678901234.12345678", "NUMERIC survives exactly, as a string");
    await sql2.end();
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DataDirLockedError names the lock file", () => {
  const err = new DataDirLockedError("/x/data");
  assert.ok(err.message.includes(join("/x/data", "upbot.lock")));
});

Deno.test("embedded database: shared_buffers 16MB by default, initdb's other settings kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_embedded_" });
  try {
    // A new data directory (initdb), then the same one again.
    for (const round of ["new", "existing"]) {
      const db = await startEmbeddedDatabase({ dataDir: dir });
      const sql = connect({ kind: "embedded", ...db.endpoint });
      try {
        const [row] = await sql`
          select current_setting('shared_buffers') as shared_buffers,
                 current_setting('TimeZone') as time_zone,
                 current_setting('DateStyle') as date_style`;
        assert.deepEqual(
          { ...row },
          { shared_buffers: "16MB", time_zone: "UTC", date_style: "ISO, MDY" },
          round,
        );
      } finally {
        await sql.end();
        await db.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("embedded database: a malformed sharedBuffers is refused before anything opens", async () => {
  await assert.rejects(
    startEmbeddedDatabase({ dataDir: null, sharedBuffers: "16 MB; fsync=off" }),
    (err: Error) =>
      err instanceof TypeError &&
      err.message ===
        `Cannot start the embedded database as 'sharedBuffers' must be like 16MB: current value is "16 MB; fsync=off"`,
  );
});

/** `path` and every entry under it whose group or others have any permission bit, with its mode. */
async function openToOthers(path: string): Promise<string[]> {
  const out: string[] = [];
  const info = await Deno.lstat(path);
  if ((info.mode! & 0o077) !== 0) out.push(`${path} 0${(info.mode! & 0o777).toString(8)}`);
  if (info.isDirectory) {
    for await (const entry of Deno.readDir(path)) {
      out.push(...await openToOthers(join(path, entry.name)));
    }
  }
  return out;
}

/** Every directory under `root` (itself included) gets `dirMode`, every file `fileMode`. */
async function chmodTree(root: string, dirMode: number, fileMode: number): Promise<void> {
  await Deno.chmod(root, dirMode);
  for await (const entry of Deno.readDir(root)) {
    const path = join(root, entry.name);
    if (entry.isDirectory) await chmodTree(path, dirMode, fileMode);
    else await Deno.chmod(path, fileMode);
  }
}

Deno.test("embedded database: a new DATA_DIR is owner-only throughout, its lock file 0600 (umask 022)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "upbot_embedded_" });
  const umask = Deno.umask(0o022);
  try {
    const dir = join(tmp, "data"); // made by upbot, as `deno task start` makes ./data
    const db = await startEmbeddedDatabase({ dataDir: dir });
    const sql = connect({ kind: "embedded", ...db.endpoint });
    try {
      await sql`create table keep (v int)`;
      await sql`insert into keep values (1)`;
      assert.deepEqual(await openToOthers(dir), [], "while it runs");
    } finally {
      await sql.end();
      await db.close();
    }
    assert.deepEqual(await openToOthers(dir), [], "once closed");
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(join(dir, "upbot.lock"))).mode! & 0o777, 0o600);
  } finally {
    Deno.umask(umask);
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("embedded database: an existing DATA_DIR open to other users (0755, files 0666) is made owner-only at start, and says so", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_embedded_" });
  const lines: string[] = [];
  try {
    const first = await startEmbeddedDatabase({ dataDir: dir });
    const sql = connect({ kind: "embedded", ...first.endpoint });
    await sql`create table keep (v int)`;
    await sql`insert into keep values (7)`;
    await sql.end();
    await first.close();
    // What earlier versions left: DATA_DIR 0755, the template's files 0666, the lock 0644.
    await chmodTree(join(dir, "pgdata"), 0o755, 0o666);
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(join(dir, "upbot.lock"), 0o644);

    const restore = setLogSink((line) => lines.push(line));
    let again;
    try {
      again = await startEmbeddedDatabase({ dataDir: dir });
    } finally {
      restore();
    }
    const sql2 = connect({ kind: "embedded", ...again.endpoint });
    try {
      const [row] = await sql2`select v from keep`;
      assert.equal(row?.v, 7, "PGlite opens the files it was given");
      await sql2`insert into keep values (8)`;
    } finally {
      await sql2.end();
      await again.close();
    }
    assert.deepEqual(await openToOthers(dir), []);
    const messages = lines.map((line) => JSON.parse(line).msg as string);
    assert.ok(
      messages.includes(
        `DATA_DIR ${dir} was open to other users (mode 0755): made owner-only (0700)`,
      ),
      messages.join("\n"),
    );
    assert.ok(
      messages.includes(
        `${join(dir, "upbot.lock")} was open to other users: made owner-only (0600)`,
      ),
      messages.join("\n"),
    );
    assert.ok(
      messages.some((m) =>
        /^the embedded database's files in .* were open to other users \((\d+) writable by them\): made \1 file\(s\) owner-only \(0600\) and \d+ directory\(ies\) \(0700\)$/
          .test(m)
      ),
      messages.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "embedded database: a file of another user open to others in pgdata refuses the start, naming it",
  // Root can chmod any file: the probe runs as root without CAP_FOWNER (setpriv), as a user would.
  ignore: Deno.build.os !== "linux" || Deno.uid() !== 0 ||
    !(() => {
      try {
        return Deno.statSync("/usr/bin/setpriv").isFile;
      } catch {
        return false;
      }
    })(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "upbot_embedded_" });
    try {
      await (await startEmbeddedDatabase({ dataDir: dir })).close();
      const planted = join(dir, "pgdata", "postgresql.auto.conf");
      await Deno.chown(planted, 65534, 65534);
      await Deno.chmod(planted, 0o666);
      const probe = new Deno.Command("/usr/bin/setpriv", {
        args: [
          "--bounding-set=-fowner",
          "--inh-caps=-fowner",
          "--",
          Deno.execPath(),
          "eval",
          `import { startEmbeddedDatabase } from ${
            JSON.stringify(new URL("../lib/db/embedded_db.ts", import.meta.url).href)
          };
           try { await startEmbeddedDatabase({ dataDir: ${JSON.stringify(dir)} }); Deno.exit(0); }
           catch (e) { await Deno.stderr.write(new TextEncoder().encode(e.message)); Deno.exit(3); }`,
        ],
        stdout: "piped",
        stderr: "piped",
      });
      const out = await probe.output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 3, stderr);
      assert.ok(
        stderr.startsWith(
          `Cannot start the embedded database as ${planted} is open to other users (mode 0666, owner uid 65534) and cannot be made owner-only (`,
        ),
        stderr,
      );
      assert.match(
        stderr,
        /make it owned by the user running upbot and not accessible to others, or choose another DATA_DIR$/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("embedded database: a DATA_DIR holding more than upbot's files (a home, /tmp) is left as it is, its database owner-only", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_embedded_" });
  const lines: string[] = [];
  try {
    await Deno.writeTextFile(join(dir, "notes.txt"), "the owner's own file");
    await Deno.chmod(dir, 0o755);
    const restore = setLogSink((line) => lines.push(line));
    let db;
    try {
      db = await startEmbeddedDatabase({ dataDir: dir });
    } finally {
      restore();
    }
    await db.close();
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o755, "not changed");
    assert.deepEqual(
      (await openToOthers(dir)).filter((p) =>
        !p.startsWith(`${dir} `) && !p.startsWith(`${join(dir, "notes.txt")} `)
      ),
      [],
      "upbot's own files are owner-only",
    );
    assert.equal((await Deno.stat(join(dir, "pgdata"))).mode! & 0o777, 0o700);
    const messages = lines.map((line) => JSON.parse(line).msg as string);
    assert.ok(
      messages.includes(
        `DATA_DIR ${dir} is open to other users (mode 0755) and holds more than upbot's files (notes.txt): left as it is; the database, its lock and the control directory in it are owner-only`,
      ),
      messages.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
