import assert from "node:assert/strict";
import { join } from "node:path";
import { connect, type DbConnection } from "../lib/db/connect.ts";
import { DataDirLockedError, startEmbeddedDatabase } from "../lib/db/embedded_db.ts";

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
