import assert from "node:assert/strict";
import { connect } from "../lib/db/connect.ts";
import { answerWithin } from "./_db.ts";
import { startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { PGlite } from "@electric-sql/pglite";
import { IDLE_IN_TRANSACTION_MS, PgliteServer } from "../lib/db/pglite_server.ts";

Deno.test("PgliteServer: many clients' concurrent queries never mix (extended protocol)", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null });
  const clients = Array.from(
    { length: 4 },
    () => connect({ kind: "embedded", ...db.endpoint }, { max: 4 }),
  );
  try {
    // Every client fires queries with different parameter types and shapes at once; a message
    // of one client landing between another's Parse/Bind/Execute would swap or lose results.
    const jobs = clients.flatMap((sql, c) =>
      Array.from({ length: 150 }, async (_, i) => {
        const kind = i % 3;
        if (kind === 0) {
          const [row] = await sql`select ${i}::int as i, ${`c${c}`}::text as tag`;
          assert.deepEqual([row?.i, row?.tag], [i, `c${c}`]);
        } else if (kind === 1) {
          const rows = await sql`select generate_series(1, ${i % 7 + 1}) as n, ${c}::int as c`;
          assert.equal(rows.length, i % 7 + 1);
          assert.ok(rows.every((r) => r.c === c));
        } else {
          const [row] = await sql`select ${String(i)} || '-' || ${String(c)} as s`;
          assert.equal(row?.s, `${i}-${c}`);
        }
      })
    );
    await Promise.all(jobs);
  } finally {
    for (const sql of clients) await sql.end();
    await db.close();
  }
});

Deno.test("PgliteServer: concurrent transactions are serialised and all increments survive", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null });
  const a = connect({ kind: "embedded", ...db.endpoint }, { max: 3 });
  const b = connect({ kind: "embedded", ...db.endpoint }, { max: 3 });
  try {
    await a`create table counter (k int primary key, v int not null)`;
    await a`insert into counter values (1, 0)`;
    const bump = (sql: typeof a, n: number) =>
      Array.from({ length: n }, () =>
        sql.begin(async (tx) => {
          const [row] = await tx`select v from counter where k = 1`;
          await new Promise((r) => setTimeout(r, 1)); // others want in meanwhile
          await tx`update counter set v = ${(row?.v as number) + 1} where k = 1`;
        }));
    // Plain queries of a third client run between the transactions (pglite-socket 0.2.17 fails
    // this mix with `portal "" does not exist`).
    const c = connect({ kind: "embedded", ...db.endpoint }, { max: 3 });
    const plain = Array.from({ length: 100 }, async (_, i) => {
      const [r] = await c`select ${i}::int as i`;
      assert.equal(r?.i, i);
    });
    await Promise.all([...bump(a, 25), ...bump(b, 25), ...plain]);
    await c.end();
    const [row] = await a`select v from counter where k = 1`;
    assert.equal(row?.v, 50, "no lost update: a transaction runs alone from begin to commit");
  } finally {
    await a.end();
    await b.end();
    await db.close();
  }
});

function startupMessage(applicationName = ""): Uint8Array {
  const name = applicationName ? `application_name\0${applicationName}\0` : "";
  const body = new TextEncoder().encode(`user\0postgres\0database\0postgres\0${name}\0`);
  const out = new Uint8Array(8 + body.length);
  const view = new DataView(out.buffer);
  view.setInt32(0, out.length);
  view.setInt32(4, 196608);
  out.set(body, 8);
  return out;
}

function typedMessage(type: string, text: string): Uint8Array {
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(5 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

function simpleQuery(text: string): Uint8Array {
  return typedMessage("Q", text + "\0");
}

/** Reads until a ReadyForQuery ('Z') message arrives; returns its transaction status byte. */
async function readUntilReady(conn: Deno.Conn): Promise<string> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error("closed");
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
    let o = 0;
    while (buf.length - o >= 5) {
      const len = new DataView(buf.buffer, buf.byteOffset + o).getInt32(1);
      if (buf.length - o < len + 1) break;
      if (buf[o] === "Z".charCodeAt(0)) return String.fromCharCode(buf[o + 5]!);
      o += len + 1;
    }
  }
}

Deno.test("PgliteServer: a client that dies inside a transaction is rolled back", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null });
  const b = connect({ kind: "embedded", ...db.endpoint }, { max: 1 });
  try {
    await b`create table probe (v int)`;
    const raw = await Deno.connect({ hostname: db.endpoint.host, port: db.endpoint.port });
    await raw.write(startupMessage());
    await raw.write(typedMessage("p", db.endpoint.password + "\0"));
    assert.equal(await readUntilReady(raw), "I");
    await raw.write(simpleQuery("begin; insert into probe values (1)"));
    assert.equal(await readUntilReady(raw), "T", "inside a transaction");
    // Another client waits while the transaction is open...
    const waiting = b`select count(*)::int as n from probe`;
    raw.close(); // ...and the owner dies without COMMIT.
    const [row] = await waiting;
    assert.equal(row?.n, 0, "the half-done transaction was rolled back");
  } finally {
    await b.end();
    await db.close();
  }
});

Deno.test("PgliteServer: a client silent inside a transaction (a hung worker) is cut off after IDLE_IN_TRANSACTION_MS", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null });
  const b = connect({ kind: "embedded", ...db.endpoint }, { max: 1 });
  const raw = await Deno.connect({ hostname: db.endpoint.host, port: db.endpoint.port });
  try {
    await b`create table probe (v int)`;
    await raw.write(startupMessage());
    await raw.write(typedMessage("p", db.endpoint.password + "\0"));
    assert.equal(await readUntilReady(raw), "I");
    await raw.write(simpleQuery("begin; insert into probe values (1)"));
    assert.equal(await readUntilReady(raw), "T", "inside a transaction");
    // The owner keeps its socket open and says nothing (a worker terminated in a busy loop).
    const started = Date.now();
    const [row] = await b`select count(*)::int as n from probe`;
    const waited = Date.now() - started;
    assert.equal(row?.n, 0, "the silent owner's transaction was rolled back");
    assert.ok(waited >= IDLE_IN_TRANSACTION_MS - 500, `cut off after ${waited} ms, not before`);
  } finally {
    raw.close();
    await b.end();
    await db.close();
  }
});

Deno.test("PgliteServer: a client without the run's password is refused", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null });
  const intruder = connect({ kind: "embedded", ...db.endpoint, password: "guess" }, { max: 1 });
  try {
    await assert.rejects(() => intruder`select 1`, /password authentication failed/);
  } finally {
    await intruder.end();
    await db.close();
  }
});

Deno.test("PgliteServer: malformed frames close the connection, the server keeps serving", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null });
  const sql = connect({ kind: "embedded", ...db.endpoint }, { max: 1 });
  try {
    for (
      const junk of [
        new Uint8Array([0, 0, 0, 0, 0x04, 0xd2, 0x16, 0x2f]), // length 0 with the SSL code
        new Uint8Array([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]), // absurd startup length
      ]
    ) {
      const raw = await Deno.connect({ hostname: db.endpoint.host, port: db.endpoint.port });
      await raw.write(junk);
      const buf = new Uint8Array(64);
      assert.equal(await raw.read(buf), null, "closed without an answer");
      raw.close();
    }
    const [row] = await sql`select 41 + 1 as n`;
    assert.equal(row?.n, 42);
  } finally {
    await sql.end();
    await db.close();
  }
});

Deno.test("PgliteServer: a session ended while its unit runs is rolled back once the unit is done, and nothing it sent after runs", async () => {
  const pg = await PGlite.create();
  // PGlite runs on this thread, so a statement cannot be caught running by a timer: the test
  // holds the unit between two of PGlite's calls instead, where the server's own awaits are.
  const run = pg.execProtocolRawStream.bind(pg);
  const held = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  pg.execProtocolRawStream = async (message, options) => {
    if (new TextDecoder().decode(message).includes("'held'")) {
      held.resolve();
      await release.promise;
    }
    return await run(message, options);
  };
  const server = new PgliteServer({ db: pg });
  const { port } = server.start();
  const b = connect({ kind: "url", url: `postgres://postgres@127.0.0.1:${port}/postgres` }, {
    max: 1,
  });
  const raw = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await b`create table probe (v int)`;
    await raw.write(startupMessage("upbot-probe/1.1/abcd1234"));
    assert.equal(await readUntilReady(raw), "I");
    // One write, two units: a transaction whose unit is held, then an insert that must never
    // run once the session is ended.
    await raw.write(
      new Uint8Array([
        ...simpleQuery("begin; insert into probe values (1); select 'held'"),
        ...simpleQuery("insert into probe values (2)"),
      ]),
    );
    await held.promise;
    // Ended while its unit runs (a terminated worker's sessions, upbot's `endSessions`).
    assert.equal(await server.disconnectApplication("upbot-probe/1.1/abcd1234"), 1);
    const waiting = b`select coalesce(sum(v), 0)::int as n from probe`;
    release.resolve();
    const [row] = await answerWithin(waiting, 15_000, "another client's query after the ending");
    assert.equal(
      row?.n,
      0,
      "the ended session's transaction was rolled back, its insert never ran",
    );
    assert.equal(pg.isInTransaction(), false);
  } finally {
    release.resolve();
    raw.close();
    await b.end({ timeout: 1 });
    await server.close();
    await pg.close();
  }
});

/** What `conn` sends until it closes, or the bytes so far and `timedOut` after `ms`. */
async function readToEnd(
  conn: Deno.Conn,
  ms: number,
): Promise<{ bytes: Uint8Array; timedOut: boolean; ms: number }> {
  const started = performance.now();
  const parts: number[] = [];
  const chunk = new Uint8Array(65536);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  try {
    for (;;) {
      const n = await Promise.race([conn.read(chunk).catch(() => null), limit]);
      if (n === "timeout") {
        return { bytes: new Uint8Array(parts), timedOut: true, ms: performance.now() - started };
      }
      if (n === null) {
        return { bytes: new Uint8Array(parts), timedOut: false, ms: performance.now() - started };
      }
      parts.push(...chunk.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("PgliteServer: 80 silent sockets do not keep an authenticated client out", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null }); // the defaults upbot runs with
  const silent: Deno.TcpConn[] = [];
  const sql = connect({ kind: "embedded", ...db.endpoint }, { max: 1 });
  try {
    for (let i = 0; i < 80; i++) {
      silent.push(await Deno.connect({ hostname: db.endpoint.host, port: db.endpoint.port }));
    }
    await new Promise((r) => setTimeout(r, 100)); // all accepted
    const [row] = await answerWithin(
      sql`select 41 + 1 as n`,
      5_000,
      "a query beside 80 silent sockets",
    );
    assert.equal(row?.n, 42);
  } finally {
    for (const conn of silent) conn.close();
    await sql.end({ timeout: 1 });
    await db.close();
  }
});

Deno.test("PgliteServer: a connection that has not authenticated within authTimeoutMs is closed", async () => {
  const pg = await PGlite.create();
  const server = new PgliteServer({ db: pg, password: "run-password", authTimeoutMs: 300 });
  const { port } = server.start();
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  const noPassword = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await noPassword.write(startupMessage());
    const [a, b] = await Promise.all([readToEnd(silent, 3_000), readToEnd(noPassword, 3_000)]);
    assert.equal(a.timedOut, false, "the silent socket is closed");
    assert.equal(a.bytes.length, 0);
    assert.ok(a.ms >= 250 && a.ms < 2_000, `closed after ${a.ms} ms`);
    assert.equal(b.timedOut, false, "the socket that sent no password is closed");
    assert.deepEqual([...b.bytes], [0x52, 0, 0, 0, 8, 0, 0, 0, 3], "only the password request");
    assert.equal(server.connections, 0);
  } finally {
    silent.close();
    noPassword.close();
    await server.close();
    await pg.close();
  }
});

Deno.test("PgliteServer: beyond maxPendingConnections, a new connection closes the oldest still authenticating", async () => {
  const pg = await PGlite.create();
  const server = new PgliteServer({
    db: pg,
    password: "run-password",
    maxPendingConnections: 4,
    authTimeoutMs: 60_000,
  });
  const { port } = server.start();
  const silent: Deno.TcpConn[] = [];
  const sql = connect({
    kind: "embedded",
    host: "127.0.0.1",
    port,
    database: "postgres",
    username: "postgres",
    password: "run-password",
  }, { max: 1 });
  try {
    for (let i = 0; i < 5; i++) {
      silent.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      await new Promise((r) => setTimeout(r, 50)); // accepted in this order
    }
    const oldest = await readToEnd(silent[0]!, 3_000);
    assert.equal(oldest.timedOut, false, "the oldest is closed");
    assert.equal(server.connections, 4);
    const [row] = await answerWithin(sql`select 1 as n`, 5_000, "a query beside 4 silent sockets");
    assert.equal(row?.n, 1);
    assert.equal(server.connections, 4, "the client in, another silent socket out");
  } finally {
    for (const conn of silent) conn.close();
    await sql.end({ timeout: 1 });
    await server.close();
    await pg.close();
  }
});

Deno.test("PgliteServer: maxConnections counts authenticated clients; one more gets FATAL 53300", async () => {
  const pg = await PGlite.create();
  const server = new PgliteServer({ db: pg, password: "run-password", maxConnections: 2 });
  const { port } = server.start();
  const client = () =>
    connect({
      kind: "embedded",
      host: "127.0.0.1",
      port,
      database: "postgres",
      username: "postgres",
      password: "run-password",
    }, { max: 1 });
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  const [a, b, c] = [client(), client(), client()];
  try {
    await answerWithin(a`select 1`, 5_000, "the first client");
    await answerWithin(b`select 1`, 5_000, "the second client"); // the silent socket took no slot
    await assert.rejects(
      () => answerWithin(c`select 1`, 5_000, "the third client"),
      /sorry, too many clients already/,
    );
    await a.end();
    const [row] = await answerWithin(client()`select 2 as n`, 5_000, "once a slot is free");
    assert.equal(row?.n, 2);
  } finally {
    silent.close();
    for (const sql of [a, b, c]) await sql.end({ timeout: 1 });
    await server.close();
    await pg.close();
  }
});

Deno.test("PgliteServer: an oversized password message is refused with FATAL at its header, never buffered", async () => {
  const pg = await PGlite.create();
  const server = new PgliteServer({ db: pg, password: "run-password" });
  const { port } = server.start();
  const raw = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await raw.write(startupMessage());
    const request = new Uint8Array(9);
    let got = 0;
    while (got < 9) got += (await raw.read(request.subarray(got))) ?? Infinity;
    assert.deepEqual([...request], [0x52, 0, 0, 0, 8, 0, 0, 0, 3]);
    // A password message announcing ~1 GiB: the header alone, none of the body.
    const header = new Uint8Array(5);
    header[0] = "p".charCodeAt(0);
    new DataView(header.buffer).setInt32(1, (1 << 30) - 1);
    await raw.write(header);
    const answer = await readToEnd(raw, 3_000);
    assert.equal(answer.timedOut, false, "closed at once, not waiting for the announced bytes");
    assert.equal(String.fromCharCode(answer.bytes[0]!), "E");
    const text = new TextDecoder().decode(answer.bytes);
    assert.ok(text.includes("SFATAL\0") && text.includes("C08P01\0"), text);
    assert.ok(text.includes("Minvalid message length before authentication\0"), text);
    // The cap is 1 KB (the length field counts itself): at it a password is checked, above refused.
    for (const [length, code] of [[1024, "28P01"], [1025, "08P01"]] as const) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(startupMessage());
        await conn.read(new Uint8Array(9));
        await conn.write(typedMessage("p", "x".repeat(length - 5) + "\0"));
        const refused = await readToEnd(conn, 3_000);
        assert.equal(refused.timedOut, false);
        assert.ok(new TextDecoder().decode(refused.bytes).includes(`C${code}\0`), `${length}`);
      } finally {
        conn.close();
      }
    }
  } finally {
    raw.close();
    await server.close();
    await pg.close();
  }
});
