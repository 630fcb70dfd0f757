/**
 * @module A PostgreSQL wire-protocol server in front of one PGlite instance, so several clients
 * (the main thread and every actor) can use it at once.
 *
 * PGlite is one database session. Interleaving two clients' protocol messages on it corrupts both:
 * the extended query protocol keeps an unnamed statement and portal between `Parse`, `Bind` and
 * `Execute`, so another client's `Bind` in between would make the first client's `Execute` fail
 * ("portal does not exist") or, worse, run the other client's statement. (pglite-socket 0.2.17
 * schedules single messages and has exactly this bug under concurrency.) So this server schedules
 * whole protocol units: every message of a client up to and including `Sync` or a simple `Query`
 * runs as one block, and while a client is inside a transaction (or has sent `Flush` and not yet
 * `Sync`), only that client's units run. Other clients wait: never keep a transaction open across
 * slow work.
 */
import type { PGlite } from "@electric-sql/pglite";

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;

/** Options of {@linkcode PgliteServer}. */
export interface PgliteServerOptions {
  db: PGlite;
  /** @default {"127.0.0.1"} */
  hostname?: string;
  /** 0 picks a free port. @default {0} */
  port?: number;
  /** Further connections are closed at once. @default {64} */
  maxConnections?: number;
  /**
   * A client that holds the session (open transaction) and sends nothing for this long while
   * others wait is disconnected and its transaction rolled back. @default {60000}
   */
  idleInTransactionMs?: number;
}

interface Client {
  id: number;
  conn: Deno.TcpConn;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  closed: boolean;
  lastActivity: number;
}

interface Unit {
  client: Client;
  messages: Uint8Array[];
  /** Ends with `Flush`: the client waits for answers before it sends `Sync`. */
  awaitsSync: boolean;
  done: PromiseWithResolvers<void>;
}

/** Serves one PGlite over TCP with unit-level scheduling. */
export class PgliteServer {
  readonly #o: Required<PgliteServerOptions>;
  #listener: Deno.TcpListener | null = null;
  #clients = new Set<Client>();
  #nextId = 1;
  #queue: Unit[] = [];
  #owner: Client | null = null;
  #running = false;
  #accepting: Promise<void> | null = null;
  #reads = new Set<Promise<void>>();
  #watchdog: ReturnType<typeof setInterval> | undefined;

  constructor(options: PgliteServerOptions) {
    this.#o = {
      hostname: "127.0.0.1",
      port: 0,
      maxConnections: 64,
      idleInTransactionMs: 60_000,
      ...options,
    };
  }

  /** Starts listening; returns the bound address. */
  start(): Deno.NetAddr {
    const listener = Deno.listen({ hostname: this.#o.hostname, port: this.#o.port });
    this.#listener = listener;
    this.#accepting = this.#acceptLoop(listener);
    this.#watchdog = setInterval(() => this.#checkIdleOwner(), 1000);
    return listener.addr;
  }

  /** Connected clients right now. */
  get connections(): number {
    return this.#clients.size;
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return; // listener closed
      }
      if (this.#clients.size >= this.#o.maxConnections) {
        conn.close();
        continue;
      }
      const client: Client = {
        id: this.#nextId++,
        conn,
        writer: conn.writable.getWriter(),
        closed: false,
        lastActivity: Date.now(),
      };
      this.#clients.add(client);
      const read = this.#readLoop(client).finally(() => this.#reads.delete(read));
      this.#reads.add(read);
    }
  }

  async #readLoop(client: Client): Promise<void> {
    const reader = client.conn.readable.getReader();
    let buf: Uint8Array = new Uint8Array(0);
    let started = false;
    let pending: Uint8Array[] = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf = concat(buf, value);
        client.lastActivity = Date.now();
        for (;;) {
          if (!started) {
            if (buf.length < 8) break;
            const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
            const len = view.getInt32(0);
            if (buf.length < len) break;
            const code = view.getInt32(4);
            const msg = buf.slice(0, len);
            buf = buf.slice(len);
            if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
              await client.writer.write(new TextEncoder().encode("N"));
            } else if (code === CANCEL_REQUEST) {
              // No backend process to signal; the protocol expects no answer.
            } else if (code === PROTOCOL_3) {
              started = true;
              await this.#submit({ client, messages: [msg], awaitsSync: false });
            } else {
              throw new Error(`unsupported startup code ${code}`);
            }
            continue;
          }
          if (buf.length < 5) break;
          const len = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getInt32(1);
          if (buf.length < len + 1) break;
          const type = String.fromCharCode(buf[0]!);
          const msg = buf.slice(0, len + 1);
          buf = buf.slice(len + 1);
          if (type === "X") return; // Terminate: never forward (it would end PGlite's session)
          pending.push(msg);
          if (type === "S" || type === "Q" || type === "H") {
            const unit = pending;
            pending = [];
            await this.#submit({ client, messages: unit, awaitsSync: type === "H" });
          }
        }
      }
    } catch {
      // A broken connection is handled like a closed one.
    } finally {
      await this.#disconnect(client);
    }
  }

  #submit(unit: Omit<Unit, "done">): Promise<void> {
    const full: Unit = { ...unit, done: Promise.withResolvers<void>() };
    this.#queue.push(full);
    this.#pump();
    return full.done.promise;
  }

  #pump(): void {
    if (this.#running) return;
    const i = this.#queue.findIndex((u) => this.#owner === null || u.client === this.#owner);
    if (i < 0) return;
    const unit = this.#queue.splice(i, 1)[0]!;
    this.#running = true;
    this.#execute(unit)
      .then(() => unit.done.resolve(), (err) => unit.done.reject(err))
      .finally(() => {
        this.#running = false;
        this.#pump();
      });
  }

  async #execute(unit: Unit): Promise<void> {
    const { db } = this.#o;
    const out: Uint8Array[] = [];
    await db.runExclusive(async () => {
      for (const msg of unit.messages) {
        await db.execProtocolRawStream(msg, { onRawData: (data) => out.push(data.slice()) });
      }
    });
    this.#owner = unit.awaitsSync || db.isInTransaction() ? unit.client : null;
    if (!unit.client.closed && out.length > 0) {
      try {
        await unit.client.writer.write(concat(...out));
      } catch {
        // The client went away; its read loop cleans up.
      }
    }
  }

  async #disconnect(client: Client): Promise<void> {
    if (client.closed) return;
    client.closed = true;
    this.#clients.delete(client);
    this.#queue = this.#queue.filter((u) => {
      if (u.client !== client) return true;
      u.done.resolve();
      return false;
    });
    try {
      client.conn.close();
    } catch { /* already closed */ }
    if (this.#owner === client) {
      // Wait for a unit of this client that may be running, then undo what it left open.
      while (this.#running) await new Promise((r) => setTimeout(r, 1));
      if (this.#owner === client) {
        const { db } = this.#o;
        // exec takes PGlite's lock itself (runExclusive around it would deadlock).
        if (db.isInTransaction()) await db.exec("ROLLBACK").catch(() => {});
        this.#owner = null;
      }
    }
    this.#pump();
  }

  #checkIdleOwner(): void {
    const owner = this.#owner;
    if (!owner || this.#running || this.#queue.length === 0) return;
    if (Date.now() - owner.lastActivity > this.#o.idleInTransactionMs) {
      void this.#disconnect(owner);
    }
  }

  /** Stops listening, disconnects every client (rolling back an open transaction). */
  async close(): Promise<void> {
    clearInterval(this.#watchdog);
    this.#listener?.close();
    await this.#accepting;
    for (const client of [...this.#clients]) await this.#disconnect(client);
    await Promise.allSettled([...this.#reads]);
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
