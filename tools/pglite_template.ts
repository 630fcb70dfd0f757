/**
 * @module Makes `lib/db/pglite_template.tar.gz`, the files of a new PGlite data directory that
 * `lib/db/embedded_db.ts` writes out instead of running `initdb`, and `pglite_template.json`
 * (the PGlite it was made with). Run `deno task pglite-template` after changing PGlite's version
 * in deno.json; `tests/pglite_template_test.ts` fails until then.
 *
 * The directory is made exactly as opening a new one did before: PGlite's first open (`initdb`,
 * then PostgreSQL starts with upbot's start parameters) and a clean close.
 */
import { PGlite } from "@electric-sql/pglite";
import { join } from "node:path";
import { pgliteStartParams } from "../lib/db/embedded_db.ts";
import { digest, packTree, readTree, TEMPLATE_URL } from "../lib/db/pglite_template.ts";

/** What the template was made from (written with the archive). */
export const TEMPLATE_INFO_URL = new URL("../lib/db/pglite_template.json", import.meta.url);

/** `pglite_template.json`: what the template was made from. */
export interface TemplateInfo {
  /** deno.json's PGlite import when it was made, e.g. `npm:@electric-sql/pglite@0.5.14`. */
  pglite: string;
  /** The cluster's `PG_VERSION` (PostgreSQL major version). */
  postgres: string;
  /** Files in the directory and their total size. */
  files: number;
  bytes: number;
  /** Hex SHA-256 of `pglite_template.tar.gz`. */
  sha256: string;
}

/** The PGlite specifier deno.json imports, e.g. `npm:@electric-sql/pglite@0.5.14`. */
export async function pgliteImport(): Promise<string> {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  ) as { imports?: Record<string, string> };
  const spec = config.imports?.["@electric-sql/pglite"];
  if (!spec) throw new Error("deno.json does not import @electric-sql/pglite");
  return spec;
}

/** Creates a data directory with PGlite and packs it; returns what was written. */
export async function makeTemplate(): Promise<TemplateInfo> {
  const tmp = await Deno.makeTempDir({ prefix: "upbot_pglite_template_" });
  try {
    const dir = join(tmp, "pgdata");
    const db = await PGlite.create({ dataDir: dir, startParams: pgliteStartParams("16MB") });
    await db.close();
    const tree = await readTree(dir);
    const archive = await packTree(tree);
    const info: TemplateInfo = {
      pglite: await pgliteImport(),
      postgres: (await Deno.readTextFile(join(dir, "PG_VERSION"))).trim(),
      files: tree.filter((e) => e.kind === "file").length,
      bytes: tree.reduce((n, e) => n + (e.kind === "file" ? e.data.length : 0), 0),
      sha256: await digest(archive),
    };
    await Deno.writeFile(TEMPLATE_URL, archive);
    await Deno.writeTextFile(TEMPLATE_INFO_URL, JSON.stringify(info, null, 2) + "\n");
    return info;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) {
  const info = await makeTemplate();
  const size = (await Deno.stat(TEMPLATE_URL)).size;
  Deno.stdout.writeSync(
    new TextEncoder().encode(
      `wrote ${TEMPLATE_URL.pathname} (${size} bytes: ${info.files} files, ${info.bytes} bytes, ${info.pglite}, PostgreSQL ${info.postgres})\n`,
    ),
  );
}
