/**
 * Tests of the PGlite template (`lib/db/pglite_template.ts`): it was made with the PGlite deno.json
 * imports (else `deno task pglite-template` must run again), it holds the same files as a directory
 * PGlite's `initdb` makes now, a database started from it is like one `initdb` made, and its
 * archive format round-trips.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { PGlite } from "@electric-sql/pglite";
import { connect } from "../lib/db/connect.ts";
import { pgliteStartParams, startEmbeddedDatabase } from "../lib/db/embedded_db.ts";
import { migrate, readMigrations } from "../lib/db/migrate.ts";
import {
  digest,
  extractTemplate,
  packTree,
  readTree,
  TEMPLATE_URL,
  type TreeEntry,
  unpackTree,
} from "../lib/db/pglite_template.ts";
import { pgliteImport, TEMPLATE_INFO_URL, type TemplateInfo } from "../tools/pglite_template.ts";

const STALE = "the PGlite template is stale: run `deno task pglite-template`";

async function templateInfo(): Promise<TemplateInfo> {
  return JSON.parse(await Deno.readTextFile(TEMPLATE_INFO_URL)) as TemplateInfo;
}

Deno.test("PGlite template: made with deno.json's PGlite, and the archive is the one recorded", async () => {
  const info = await templateInfo();
  assert.equal(info.pglite, await pgliteImport(), STALE);
  assert.equal(info.sha256, await digest(await Deno.readFile(TEMPLATE_URL)), STALE);
  const files = unpackTree(await Deno.readFile(TEMPLATE_URL)).filter((e) => e.kind === "file");
  assert.equal(files.length, info.files);
  assert.equal(files.reduce((n, e) => n + (e.kind === "file" ? e.data.length : 0), 0), info.bytes);
});

Deno.test("PGlite template: the same files and sizes as a directory PGlite's initdb makes now", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "upbot_template_" });
  try {
    const dir = join(tmp, "pgdata");
    const db = await PGlite.create({ dataDir: dir, startParams: pgliteStartParams("16MB") });
    await db.close();
    const shape = (tree: TreeEntry[]) =>
      tree.map((e) => e.kind === "dir" ? `${e.path}/` : `${e.path} ${e.data.length}`);
    const template = unpackTree(await Deno.readFile(TEMPLATE_URL));
    assert.deepEqual(shape(template), shape(await readTree(dir)), STALE);
    // Contents: the same PostgreSQL version and configuration files.
    for (const name of ["PG_VERSION", "postgresql.conf", "postgresql.auto.conf", "pg_hba.conf"]) {
      const made = await Deno.readFile(join(dir, name));
      const shipped = template.find((e) => e.path === name);
      assert.ok(shipped?.kind === "file", name);
      assert.deepEqual(shipped.data, made, `${name}: ${STALE}`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("PGlite template: a new DATA_DIR from it has initdb's settings and takes the migrations", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_template_" });
  try {
    const db = await startEmbeddedDatabase({ dataDir: dir });
    const sql = connect({ kind: "embedded", ...db.endpoint });
    try {
      const [row] = await sql`
        select current_setting('shared_buffers') as shared_buffers,
               current_setting('TimeZone') as time_zone,
               current_setting('DateStyle') as date_style,
               current_setting('server_encoding') as encoding,
               (select datcollate from pg_database where datname = current_database()) as collate`;
      assert.deepEqual({ ...row }, {
        shared_buffers: "16MB",
        time_zone: "UTC",
        date_style: "ISO, MDY",
        encoding: "UTF8",
        collate: "C",
      });
      const result = await migrate(sql);
      assert.equal(result.applied.length, (await readMigrations()).length);
      assert.deepEqual(result.skipped, []);
      const [row2] = await sql<{ n: number }[]>`select count(*)::int as n from schema_migrations`;
      assert.equal(row2?.n, result.applied.length);
    } finally {
      await sql.end();
      await db.close();
    }
    // Written as copies: no file of the new directory is a hard link.
    for (const entry of await readTree(join(dir, "pgdata"))) {
      if (entry.kind !== "file") continue;
      const stat = await Deno.stat(join(dir, "pgdata", entry.path));
      assert.equal(stat.nlink, 1, entry.path);
    }
    await Deno.stat(join(dir, "pgdata", "PG_VERSION"));
    await assert.rejects(Deno.stat(join(dir, "pgdata.new")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PGlite template: a half-made earlier attempt and an empty pgdata are replaced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_template_" });
  try {
    await Deno.mkdir(join(dir, "pgdata"));
    await Deno.mkdir(join(dir, "pgdata.new/base"), { recursive: true });
    await Deno.writeTextFile(join(dir, "pgdata.new/PG_VERSION"), "18\n");
    const db = await startEmbeddedDatabase({ dataDir: dir });
    const sql = connect({ kind: "embedded", ...db.endpoint });
    try {
      const [row] = await sql`select current_setting('TimeZone') as tz`;
      assert.equal(row?.tz, "UTC");
    } finally {
      await sql.end();
      await db.close();
    }
    await assert.rejects(Deno.stat(join(dir, "pgdata.new")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PGlite template: a pgdata holding files but no PG_VERSION is refused, left as it was", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upbot_template_" });
  try {
    await Deno.mkdir(join(dir, "pgdata"));
    await Deno.writeTextFile(join(dir, "pgdata", "notes.txt"), "mine");
    await assert.rejects(
      startEmbeddedDatabase({ dataDir: dir }),
      (err: Error) =>
        err.message.startsWith(
          `Cannot create the embedded database in ${
            join(dir, "pgdata")
          }: it holds files but no PG_VERSION, so it is no PostgreSQL data directory: move it away or choose another DATA_DIR (`,
        ),
    );
    assert.equal(await Deno.readTextFile(join(dir, "pgdata", "notes.txt")), "mine");
    await assert.rejects(Deno.stat(join(dir, "pgdata.new")), Deno.errors.NotFound);
    // The lock went with the failed start: the directory can be opened again once fixed.
    await Deno.remove(join(dir, "pgdata"), { recursive: true });
    const db = await startEmbeddedDatabase({ dataDir: dir });
    await db.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("PGlite template archive: round trip, equal files as links written as copies", async () => {
  const a = new TextEncoder().encode("same bytes");
  const tree: TreeEntry[] = [
    { kind: "dir", path: "base" },
    { kind: "file", path: "base/1", mode: 0o600, data: a },
    { kind: "file", path: "base/2", mode: 0o644, data: a.slice() },
    { kind: "file", path: "big", mode: 0o600, data: new Uint8Array(1500).fill(7) },
    { kind: "file", path: "empty", mode: 0o600, data: new Uint8Array() },
  ];
  const gz = await packTree(tree);
  assert.deepEqual(unpackTree(gz), tree);
  const dest = join(await Deno.makeTempDir({ prefix: "upbot_template_" }), "out");
  try {
    await extractTemplate(gz, dest);
    // Owner only: a file's owner bits (0600 at most), directories 0700.
    assert.deepEqual(
      await readTree(dest),
      tree.map((e) => e.kind === "file" ? { ...e, mode: e.mode & 0o600 } : { ...e }),
    );
    for (const d of [dest, join(dest, "base")]) {
      assert.equal((await Deno.stat(d)).mode! & 0o777, 0o700, d);
    }
    assert.equal((await Deno.stat(join(dest, "base/2"))).nlink, 1);
    // A directory that exists already is not written into.
    await assert.rejects(extractTemplate(gz, dest), Deno.errors.AlreadyExists);
  } finally {
    await Deno.remove(join(dest, ".."), { recursive: true });
  }
});

Deno.test("PGlite template archive: a damaged header or a path leaving the directory is refused", async () => {
  const gz = await packTree([{ kind: "file", path: "f", mode: 0o600, data: new Uint8Array(3) }]);
  const tar = new Uint8Array(gunzipSync(gz));
  tar[0] = "g".charCodeAt(0);
  assert.throws(
    () => unpackTree(new Uint8Array(gzipSync(tar))),
    { message: "Cannot extract the PGlite template as its tar header at 0 is damaged" },
  );
  for (const path of ["../x", "/etc/x", "a//b"]) {
    const bad = await packTree([{ kind: "file", path, mode: 0o600, data: new Uint8Array(1) }]);
    assert.throws(() => unpackTree(bad), {
      message: `Cannot extract the PGlite template as it names the path ${JSON.stringify(path)}`,
    });
  }
});
