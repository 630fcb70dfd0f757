/**
 * @module Migration runner: applies `migrations/NNN_name.sql` in order, once each, recorded in
 * `schema_migrations`.
 *
 * Each file runs in its own transaction that first takes a transaction-scoped advisory lock, then
 * re-reads what is applied: two processes starting at once serialise on the lock and the second
 * finds the work done. On the embedded database the socket already serialises transactions; the
 * lock is then harmless.
 */
import type { Client } from "./connect.ts";
import { leaseTaken } from "./lease.ts";

/** One migration file. */
export interface Migration {
  /** Numeric prefix, e.g. 1 for `001_initial.sql`. */
  version: number;
  /** File name, e.g. `001_initial.sql`. */
  name: string;
  sql: string;
}

/** Arbitrary constant shared by every upbot process ("upbot" in ASCII). */
const MIGRATION_LOCK_KEY = 0x7570626f74;

const FILE_NAME = /^(\d{3,})_[a-z0-9_]+\.sql$/;

/**
 * Where the migrations ship: the repository's `migrations/` folder, found from this module's own
 * URL, never from the working directory. `deno task compile` embeds the folder
 * (`--include migrations/`); in the binary `import.meta.url` points into the embedded file system,
 * where `Deno.readDir` and `Deno.readTextFile` read the embedded copies. The URL constructor
 * resolves the `..` here: the embedded file system does not resolve `..` in a path string.
 */
export const MIGRATIONS_DIR = new URL("../../migrations/", import.meta.url);

/**
 * Reads every migration file in `dir`, sorted by version.
 *
 * @throws {Error} when the folder is missing or holds no migration, for a file name that does not
 * match `NNN_name.sql` or a repeated version.
 */
export async function readMigrations(dir: URL = MIGRATIONS_DIR): Promise<Migration[]> {
  const out: Migration[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    throw new Error(
      `migrations folder ${dir.href} not found (a compiled binary needs --include migrations/)`,
    );
  }
  for (const entry of entries) {
    if (!entry.isFile || !entry.name.endsWith(".sql")) continue;
    const m = FILE_NAME.exec(entry.name);
    if (!m) throw new Error(`migration file name ${entry.name} does not match NNN_name.sql`);
    out.push({
      version: Number(m[1]),
      name: entry.name,
      sql: await Deno.readTextFile(new URL(entry.name, dir)),
    });
  }
  if (out.length === 0) throw new Error(`migrations folder ${dir.href} holds no migration`);
  out.sort((a, b) => a.version - b.version);
  for (let i = 1; i < out.length; i++) {
    if (out[i]!.version === out[i - 1]!.version) {
      throw new Error(`two migrations share version ${out[i]!.version}`);
    }
  }
  return out;
}

/** What {@linkcode migrate} did. */
export interface MigrateResult {
  applied: string[];
  skipped: string[];
}

/** How a database's recorded migrations compare with this version's files. */
export interface MigrationStatus {
  /** Files not applied yet, in order. */
  pending: string[];
  /** Versions recorded in the database that this version has no file of (a newer upbot's). */
  unknown: number[];
}

/** Compares `schema_migrations` (absent: nothing applied) with `migrations` (default: the files). */
export async function migrationStatus(
  sql: Client,
  migrations?: Migration[],
): Promise<MigrationStatus> {
  const files = migrations ?? await readMigrations();
  const [table] = await sql<{ exists: boolean }[]>`
    select to_regclass('schema_migrations') is not null as exists`;
  const recorded = table?.exists
    ? new Set(
      (await sql<{ version: number }[]>`select version from schema_migrations`).map((r) =>
        r.version
      ),
    )
    : new Set<number>();
  const known = new Set(files.map((f) => f.version));
  return {
    pending: files.filter((f) => !recorded.has(f.version)).map((f) => f.name),
    unknown: [...recorded].filter((v) => !known.has(v)).sort((a, b) => a - b),
  };
}

/**
 * Applies every migration not yet recorded in `schema_migrations`. Idempotent.
 *
 * @throws {Error} naming the failing file; that file's changes are rolled back.
 * @throws {Error} when the database holds migrations this version does not know (a newer
 *   upbot's): this version would run on a schema it was not written for; nothing is applied.
 * @throws {Error} naming the pending migrations when another upbot holds the hot-standby lease
 *   (`lease.ts`): nothing is applied under a leader running older code.
 */
export async function migrate(sql: Client, migrations?: Migration[]): Promise<MigrateResult> {
  const files = migrations ?? await readMigrations();
  const { pending, unknown } = await migrationStatus(sql, files);
  if (pending.length > 0 && await leaseTaken(sql)) {
    // A leader on older code would trade on a schema (views, checks) changed under it; so would
    // it if a newer tool (the backtest) migrated beside it. Upgrading a hot-standby pair means
    // stopping both first (docs/operations.md).
    throw new Error(
      `Cannot start as another upbot trades on this database (it holds the lease) and this version would apply migrations under it (${
        pending.join(", ")
      }): stop every upbot on this database, then start this version first (docs/operations.md, Upgrading)`,
    );
  }
  if (unknown.length > 0) {
    throw new Error(
      `Cannot start as the database was migrated by a newer upbot (migration version(s) ${
        unknown.join(", ")
      } unknown to this one): run that newer version, or restore the backup taken before the upgrade (docs/operations.md, Upgrading)`,
    );
  }
  // Start-up fast path: `migrationStatus` was the one read of what is applied. A recorded version
  // stays recorded, so a file found there is skipped without its own transaction; the others
  // take the lock and re-read inside their transaction, as a process starting at the same time
  // may apply them.
  const todo = new Set(pending);
  if (todo.size > 0) {
    await sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
      await tx`
        create table if not exists schema_migrations (
          version    integer     primary key,
          name       text        not null,
          applied_at timestamptz not null default now()
        )`;
    });
  }
  const result: MigrateResult = { applied: [], skipped: [] };
  for (const file of files) {
    if (!todo.has(file.name)) {
      result.skipped.push(file.name);
      continue;
    }
    const applied = await sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
      const [done] = await tx`select 1 from schema_migrations where version = ${file.version}`;
      if (done) return false;
      try {
        await tx.unsafe(file.sql).simple();
      } catch (err) {
        throw new Error(`migration ${file.name} failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
      await tx`insert into schema_migrations (version, name) values (${file.version}, ${file.name})`;
      return true;
    });
    (applied ? result.applied : result.skipped).push(file.name);
  }
  return result;
}
