/**
 * @module A new PGlite data directory without `initdb`: `pglite_template.tar.gz` (next to this
 * file) holds the files of a directory PGlite 0.5.14 created (`initdb`, then one clean start and
 * stop, exactly what opening a new directory did before), made by `deno task pglite-template`.
 * Writing those files out takes tens of milliseconds where `initdb` took 5-7 s and a few hundred MB
 * of WebAssembly memory (docs/benchmarks.md).
 *
 * The archive is a ustar tarball, gzip-compressed. A file whose bytes equal an earlier file's is
 * stored as a hard-link entry (the three databases share most catalog files byte for byte): that
 * halves the archive. {@linkcode extractTemplate} writes such an entry as an independent copy,
 * never as a link. `pglite_template.json` (written by the tool) records the PGlite the template was made
 * with; `tests/pglite_template_test.ts` fails when it no longer matches deno.json's.
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { join } from "node:path";

/** The template archive; `deno compile` ships it (`--include` in deno.json's compile task). */
export const TEMPLATE_URL = new URL("./pglite_template.tar.gz", import.meta.url);
/** One entry of an archive: a directory, or a file with its bytes. */
export type TreeEntry =
  | { kind: "dir"; path: string }
  | { kind: "file"; path: string; mode: number; data: Uint8Array };

const BLOCK = 512;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function writeString(header: Uint8Array, offset: number, length: number, text: string): void {
  const bytes = encoder.encode(text);
  if (bytes.length > length) {
    throw new RangeError(`Cannot write the tar header as ${JSON.stringify(text)} is too long`);
  }
  header.set(bytes, offset);
}

function writeOctal(header: Uint8Array, offset: number, length: number, value: number): void {
  writeString(header, offset, length, value.toString(8).padStart(length - 1, "0") + "\0");
}

function header(
  path: string,
  type: "0" | "1" | "5",
  size: number,
  mode: number,
  link = "",
): Uint8Array {
  const h = new Uint8Array(BLOCK);
  writeString(h, 0, 100, path);
  writeOctal(h, 100, 8, mode);
  writeOctal(h, 108, 8, 0); // uid
  writeOctal(h, 116, 8, 0); // gid
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, 0); // mtime: the files get the time they are written
  h.fill(0x20, 148, 156); // the checksum counts its own field as spaces
  writeString(h, 156, 1, type);
  writeString(h, 157, 100, link);
  writeString(h, 257, 6, "ustar\0");
  writeString(h, 263, 2, "00");
  let sum = 0;
  for (const byte of h) sum += byte;
  writeString(h, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

/**
 * A gzip-compressed ustar archive of `entries` (paths relative, `/`-separated, at most 100
 * bytes); a file equal to an earlier one becomes a hard-link entry naming it.
 */
export async function packTree(entries: TreeEntry[]): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const seen = new Map<string, string>();
  for (const entry of entries) {
    if (entry.kind === "dir") {
      parts.push(header(entry.path + "/", "5", 0, 0o755));
      continue;
    }
    const key = entry.data.length > 0 ? await digest(entry.data) : null;
    const earlier = key === null ? undefined : seen.get(key);
    if (earlier !== undefined) {
      parts.push(header(entry.path, "1", 0, entry.mode, earlier));
      continue;
    }
    if (key !== null) seen.set(key, entry.path);
    parts.push(header(entry.path, "0", entry.data.length, entry.mode), entry.data);
    const pad = (BLOCK - (entry.data.length % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(2 * BLOCK));
  const tar = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    tar.set(p, at);
    at += p.length;
  }
  return new Uint8Array(gzipSync(tar, { level: 9 }));
}

/** Hex SHA-256 of `data`. */
export async function digest(data: Uint8Array): Promise<string> {
  const hash = new Uint8Array(
    await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>),
  );
  return Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
}

function readString(block: Uint8Array, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return decoder.decode(end === -1 ? field : field.subarray(0, end));
}

function readOctal(block: Uint8Array, offset: number, length: number): number {
  const text = readString(block, offset, length).trim();
  return text === "" ? 0 : parseInt(text, 8);
}

/** A path inside the archive that stays inside the directory it is extracted to. */
function safePath(path: string): string {
  const clean = path.replace(/\/+$/, "");
  if (
    clean === "" || clean.startsWith("/") || clean.split("/").some((p) => p === ".." || p === "")
  ) {
    throw new Error(
      `Cannot extract the PGlite template as it names the path ${JSON.stringify(path)}`,
    );
  }
  return clean;
}

/**
 * The entries of a gzip-compressed ustar archive made by {@linkcode packTree}, hard links
 * resolved to copies of the bytes they name.
 *
 * @throws {Error} on a damaged archive or an entry of another type.
 */
export function unpackTree(gz: Uint8Array): TreeEntry[] {
  const unzipped = gunzipSync(gz);
  const tar = new Uint8Array(unzipped.buffer, unzipped.byteOffset, unzipped.length);
  const files = new Map<string, Uint8Array>();
  const out: TreeEntry[] = [];
  let at = 0;
  while (at + BLOCK <= tar.length) {
    const block = tar.subarray(at, at + BLOCK);
    if (block.every((b) => b === 0)) break;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    if (sum !== readOctal(block, 148, 8)) {
      throw new Error(`Cannot extract the PGlite template as its tar header at ${at} is damaged`);
    }
    const name = readString(block, 0, 100);
    const prefix = readString(block, 345, 155);
    const path = safePath(prefix ? `${prefix}/${name}` : name);
    const type = String.fromCharCode(block[156]!);
    const size = readOctal(block, 124, 12);
    const mode = readOctal(block, 100, 8);
    at += BLOCK;
    if (type === "5") {
      out.push({ kind: "dir", path });
    } else if (type === "0" || type === "\0") {
      if (at + size > tar.length) {
        throw new Error(`Cannot extract the PGlite template as ${path} is cut short`);
      }
      const data = tar.subarray(at, at + size);
      files.set(path, data);
      out.push({ kind: "file", path, mode, data });
      at += Math.ceil(size / BLOCK) * BLOCK;
    } else if (type === "1") {
      const data = files.get(safePath(readString(block, 157, 100)));
      if (!data) {
        throw new Error(`Cannot extract the PGlite template as ${path} links to a missing file`);
      }
      out.push({ kind: "file", path, mode, data });
    } else {
      throw new Error(
        `Cannot extract the PGlite template as ${path} has the unsupported entry type ${
          JSON.stringify(type)
        }`,
      );
    }
  }
  return out;
}

/** Every directory and file under `root`, parents first, sorted (paths relative to `root`). */
export async function readTree(root: string, under = ""): Promise<TreeEntry[]> {
  const names: Deno.DirEntry[] = [];
  for await (const entry of Deno.readDir(join(root, under))) names.push(entry);
  names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: TreeEntry[] = [];
  for (const entry of names) {
    const path = under ? `${under}/${entry.name}` : entry.name;
    if (entry.isDirectory) {
      out.push({ kind: "dir", path }, ...await readTree(root, path));
    } else if (entry.isFile) {
      const full = join(root, path);
      const mode = (await Deno.stat(full)).mode ?? 0o600;
      out.push({ kind: "file", path, mode: mode & 0o777, data: await Deno.readFile(full) });
    } else {
      throw new Error(`Cannot pack ${join(root, path)} as it is neither a file nor a directory`);
    }
  }
  return out;
}

/**
 * Writes the template's files into `dest`, which must not exist yet: each file a new file of its
 * own (a hard-link entry too). Owner only: directories 0700, files the archive's owner bits
 * (0600 at most). The archive records 0666 for most files, and `mode` bypasses the umask, so
 * that mode would let any local user rewrite `postgresql.auto.conf` or the catalogs.
 */
export async function extractTemplate(gz: Uint8Array, dest: string): Promise<void> {
  await Deno.mkdir(dest, { mode: 0o700 });
  for (const entry of unpackTree(gz)) {
    const path = join(dest, entry.path);
    if (entry.kind === "dir") await Deno.mkdir(path, { mode: 0o700 });
    else await Deno.writeFile(path, entry.data, { createNew: true, mode: entry.mode & 0o600 });
  }
}
