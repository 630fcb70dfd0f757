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

/**
 * How long a session may sit idle inside a transaction before the server ends it (ms), here and
 * on PostgreSQL (`lib/db/connect.ts`). Every transaction of upbot is a few statements long; only a hung or
 * dead worker's stays open, and on the embedded server it would stall every other client.
 */
export const IDLE_IN_TRANSACTION_MS = 10_000;

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;

/** Messages whose protocols this server does not speak (COPY, function call). */
const UNSUPPORTED = new Set(["d", "c", "f", "F"]);

/**
 * Before a client has authenticated, its messages are capped so that a stranger cannot make the
 * server buffer much: a startup packet at PostgreSQL's own limit (10,000 bytes), a password
 * message at 1 KB (the run's password is a UUID).
 */
const MAX_STARTUP_LENGTH = 10_000;
const MAX_PASSWORD_LENGTH = 1024;
const MAX_MESSAGE_LENGTH = 1 << 30;

/** How long a new connection may take to authenticate (ms): upbot's clients take milliseconds. */
export const AUTH_TIMEOUT_MS = 5_000;
/** Connections still authenticating that are kept at once (the oldest goes for a new one). */
export const MAX_PENDING_CONNECTIONS = 16;

/** AuthenticationCleartextPassword: `R`, length 8, code 3. */
const AUTH_CLEARTEXT_PASSWORD = new Uint8Array([0x52, 0, 0, 0, 8, 0, 0, 0, 3]);

/** ErrorResponse FATAL 28P01 "password authentication failed". */
const PASSWORD_FAILED = errorResponse("FATAL", "28P01", "password authentication failed");
/** ErrorResponse FATAL 08P01 for a message longer than allowed before authentication. */
const MESSAGE_TOO_LONG = errorResponse(
  "FATAL",
  "08P01",
  "invalid message length before authentication",
);
/** ErrorResponse FATAL 53300, PostgreSQL's answer when every connection slot is taken. */
const TOO_MANY_CLIENTS = errorResponse("FATAL", "53300", "sorry, too many clients already");

/** A frame announcing more bytes than its phase allows. */
class FrameTooLongError extends Error {}

function errorResponse(severity: string, code: string, message: string): Uint8Array {
  const body = new TextEncoder().encode(
    `S${severity}\0V${severity}\0C${code}\0M${message}\0\0`,
  );
  const out = new Uint8Array(5 + body.length);
  out[0] = 0x45; // 'E'
  new DataView(out.buffer).setInt32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

/** Compares without an early exit, so timing does not tell how much of a guess was right. */
function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** Splits a byte stream into protocol frames, copying each chunk once. */
class FrameReader {
  #buf = new Uint8Array(0);
  #start = 0;
  #end = 0;

  push(chunk: Uint8Array): void {
    const have = this.#end - this.#start;
    if (this.#start + have + chunk.length > this.#buf.length) {
      const next = new Uint8Array(Math.max(this.#buf.length * 2, have + chunk.length, 4096));
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
      this.#start = 0;
      this.#end = have;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** A startup-phase packet (int32 length including itself, then the body), or null. */
  nextStartup(): Uint8Array | null {
    if (this.#end - this.#start < 8) return null;
    const len = new DataView(this.#buf.buffer, this.#start).getInt32(0);
    if (len < 8 || len > MAX_STARTUP_LENGTH) throw new Error(`bad startup length ${len}`);
    return this.#end - this.#start < len ? null : this.#take(len);
  }

  /**
   * A typed message (type byte, int32 length including itself, body), or null. A length above
   * `maxLength` throws {@linkcode FrameTooLongError} as soon as the header is in, before any of
   * the body is buffered.
   */
  nextMessage(maxLength = MAX_MESSAGE_LENGTH): Uint8Array | null {
    if (this.#end - this.#start < 5) return null;
    const len = new DataView(this.#buf.buffer, this.#start + 1).getInt32(0);
    if (len > maxLength) throw new FrameTooLongError(`message length ${len} above ${maxLength}`);
    if (len < 4) throw new Error(`bad message length ${len}`);
    return this.#end - this.#start < len + 1 ? null : this.#take(len + 1);
  }
}

/** Options of {@linkcode PgliteServer}. */
export interface PgliteServerOptions {
  db: PGlite;
  /** @default {"127.0.0.1"} */
  hostname?: string;
  /** 0 picks a free port. @default {0} */
  port?: number;
  /**
   * Authenticated clients at once; one more is refused with PostgreSQL's FATAL 53300 once it has
   * authenticated. Connections still authenticating do not count (see `maxPendingConnections`).
   * @default {64}
   */
  maxConnections?: number;
  /**
   * Connections still authenticating kept at once: a new one beyond this closes the oldest of
   * them. @default {16}
   */
  maxPendingConnections?: number;
  /** A connection that has not authenticated within this many ms is closed. @default {5000} */
  authTimeoutMs?: number;
  /**
   * A client that holds the session (open transaction) and sends nothing for this long while
   * others wait is disconnected and its transaction rolled back. @default {10000}
   */
  idleInTransactionMs?: number;
  /**
   * Password every client must send (cleartext over loopback), so that no other local process
   * can write to the database; null accepts any client. @default {null}
   */
  password?: string | null;
}

interface Client {
  id: number;
  /** From the startup message; "" until it arrives or when the client sends none. */
  applicationName: string;
  conn: Deno.TcpConn;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  closed: boolean;
  lastActivity: number;
  /** Sent the password (or the startup message, without a password). */
  authenticated: boolean;
  /** Closes the connection if it has not authenticated in time. */
  authTimer: ReturnType<typeof setTimeout> | undefined;
}

interface Unit {
  client: Client;
  messages: Uint8Array[];
  /** Ends with `Flush`: the client waits for answers before it sends `Sync`. */
  awaitsSync: boolean;
  /** Resolves with PGlite's answer to the whole unit. */
  done: PromiseWithResolvers<Uint8Array>;
}

/** Serves one PGlite over TCP with unit-level scheduling. */
export class PgliteServer {
  readonly #options: Required<PgliteServerOptions>;
  #listener: Deno.TcpListener | null = null;
  #clients = new Set<Client>();
  /** Clients not yet authenticated, oldest first. */
  #pending = new Set<Client>();
  #nextId = 1;
  #queue: Unit[] = [];
  #owner: Client | null = null;
  #running = false;
  #accepting: Promise<void> | null = null;
  #reads = new Set<Promise<void>>();
  #watchdog: ReturnType<typeof setInterval> | undefined;

  constructor(options: PgliteServerOptions) {
    this.#options = {
      hostname: "127.0.0.1",
      port: 0,
      maxConnections: 64,
      maxPendingConnections: MAX_PENDING_CONNECTIONS,
      authTimeoutMs: AUTH_TIMEOUT_MS,
      idleInTransactionMs: IDLE_IN_TRANSACTION_MS,
      password: null,
      ...options,
    };
  }

  /** Starts listening; returns the bound address. */
  start(): Deno.NetAddr {
    const listener = Deno.listen({ hostname: this.#options.hostname, port: this.#options.port });
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
      // Any local user can connect, so connections that have not authenticated are held apart:
      // they never take one of the `maxConnections` slots of upbot's clients, at most
      // `maxPendingConnections` of them are kept (a new one closes the oldest), each for at most
      // `authTimeoutMs`, and each buffers at most a startup packet or a password message. Silent
      // sockets thus cannot keep upbot's actors out: an actor authenticates within a round trip
      // or two, so a stranger would have to open `maxPendingConnections` connections within
      // that time, again and again, to close its handshake. A local user can still do that (or
      // otherwise load the machine), at the cost of a flood as heavy for them as for us; and the
      // whole of the pending connections' memory stays a few hundred KB.
      if (this.#pending.size >= this.#options.maxPendingConnections) {
        const oldest = this.#pending.values().next().value!;
        void this.#disconnect(oldest);
      }
      // Each answer is one write, and pipelined queries get one answer each: with Nagle's
      // algorithm on, every answer after the first waited for the client's delayed ACK (40 ms on
      // Linux), so a pipelined read cost 40 ms per query.
      try {
        conn.setNoDelay(true);
      } catch {
        // Only slower for this client; the accept loop must go on.
      }
      const client: Client = {
        id: this.#nextId++,
        applicationName: "",
        conn,
        writer: conn.writable.getWriter(),
        closed: false,
        lastActivity: Date.now(),
        authenticated: false,
        authTimer: undefined,
      };
      client.authTimer = setTimeout(() => {
        if (!client.authenticated) void this.#disconnect(client);
      }, this.#options.authTimeoutMs);
      this.#clients.add(client);
      this.#pending.add(client);
      const read = this.#readLoop(client).finally(() => this.#reads.delete(read));
      this.#reads.add(read);
    }
  }

  async #readLoop(client: Client): Promise<void> {
    const reader = client.conn.readable.getReader();
    const frames = new FrameReader();
    let phase: "startup" | "password" | "ready" = "startup";
    let startup: Uint8Array | null = null;
    let pending: Uint8Array[] = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        frames.push(value);
        client.lastActivity = Date.now();
        for (;;) {
          if (phase === "startup") {
            const msg = frames.nextStartup();
            if (!msg) break;
            const code = new DataView(msg.buffer, msg.byteOffset).getInt32(4);
            if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
              await client.writer.write(new TextEncoder().encode("N"));
            } else if (code === CANCEL_REQUEST) {
              // No backend process to signal; the protocol expects no answer.
            } else if (code === PROTOCOL_3) {
              startup = msg;
              client.applicationName = startupParameters(msg).get("application_name") ?? "";
              if (this.#options.password === null) {
                if (!(await this.#authenticated(client))) return;
                phase = "ready";
                await this.#runUnit({ client, messages: [msg], awaitsSync: false });
              } else {
                phase = "password";
                await client.writer.write(AUTH_CLEARTEXT_PASSWORD);
              }
            } else {
              return; // not a PostgreSQL client
            }
            continue;
          }
          const msg = frames.nextMessage(
            phase === "password" ? MAX_PASSWORD_LENGTH : MAX_MESSAGE_LENGTH,
          );
          if (!msg) break;
          const type = String.fromCharCode(msg[0]!);
          if (phase === "password") {
            const given = new TextDecoder().decode(msg.subarray(5, msg.length - 1));
            if (type !== "p" || !sameSecret(given, this.#options.password!)) {
              await client.writer.write(PASSWORD_FAILED);
              return;
            }
            if (!(await this.#authenticated(client))) return;
            phase = "ready";
            // PGlite itself answers the startup (AuthenticationOk, parameters, ReadyForQuery).
            await this.#runUnit({ client, messages: [startup!], awaitsSync: false });
            continue;
          }
          if (type === "X") return; // Terminate: never forward (it would end PGlite's session)
          // COPY and the function-call protocol never end a unit here: refuse rather than hang.
          if (UNSUPPORTED.has(type)) return;
          pending.push(msg);
          if (type === "S" || type === "Q" || type === "H") {
            const unit = pending;
            pending = [];
            await this.#runUnit({ client, messages: unit, awaitsSync: type === "H" });
          }
        }
      }
    } catch (err) {
      // A broken connection or a malformed frame is handled like a closed connection; a stranger's
      // oversized message before authentication is told why first.
      if (err instanceof FrameTooLongError && !client.authenticated && !client.closed) {
        await client.writer.write(MESSAGE_TOO_LONG).catch(() => {});
      }
    } finally {
      await this.#disconnect(client);
    }
  }

  /**
   * Moves `client` from the pending connections to the authenticated ones; false (after a FATAL
   * 53300 to it) when `maxConnections` clients are authenticated already.
   */
  async #authenticated(client: Client): Promise<boolean> {
    clearTimeout(client.authTimer);
    this.#pending.delete(client);
    client.authenticated = true;
    if (this.#clients.size - this.#pending.size > this.#options.maxConnections) {
      await client.writer.write(TOO_MANY_CLIENTS);
      return false;
    }
    return true;
  }

  /**
   * Queues a unit, waits for its turn and its answer, then writes the answer. The write happens
   * outside the scheduler: a client that stops reading only ever stalls itself.
   */
  async #runUnit(unit: Omit<Unit, "done">): Promise<void> {
    // An ended session runs nothing more, though its read loop may still hold frames it read.
    if (unit.client.closed) return;
    const full: Unit = { ...unit, done: Promise.withResolvers<Uint8Array>() };
    this.#queue.push(full);
    this.#pump();
    const answer = await full.done.promise;
    if (answer.length > 0 && !unit.client.closed) await unit.client.writer.write(answer);
  }

  #pump(): void {
    if (this.#running) return;
    if (this.#owner?.closed) {
      // Its session ended while its unit ran: undo what the unit left open before anyone else.
      this.#running = true;
      this.#rollBackOwner().finally(() => {
        this.#running = false;
        this.#pump();
      });
      return;
    }
    const i = this.#queue.findIndex((u) => this.#owner === null || u.client === this.#owner);
    if (i < 0) return;
    const unit = this.#queue.splice(i, 1)[0]!;
    this.#running = true;
    this.#execute(unit)
      .then((answer) => unit.done.resolve(answer), (err) => unit.done.reject(err))
      .finally(() => {
        this.#running = false;
        this.#pump();
      });
  }

  async #execute(unit: Unit): Promise<Uint8Array> {
    const { db } = this.#options;
    const out: Uint8Array[] = [];
    try {
      await db.runExclusive(async () => {
        for (const msg of unit.messages) {
          await db.execProtocolRawStream(msg, { onRawData: (data) => out.push(data.slice()) });
        }
      });
    } finally {
      // Also after a failure: a client left inside a transaction keeps the session until its
      // disconnect rolls it back (its read loop ends on the rejection).
      this.#owner = unit.awaitsSync || db.isInTransaction() ? unit.client : null;
    }
    return concat(...out);
  }

  async #disconnect(client: Client): Promise<void> {
    if (client.closed) return;
    client.closed = true;
    clearTimeout(client.authTimer);
    this.#clients.delete(client);
    this.#pending.delete(client);
    this.#queue = this.#queue.filter((u) => {
      if (u.client !== client) return true;
      u.done.resolve(new Uint8Array(0));
      return false;
    });
    try {
      client.conn.close();
    } catch { /* already closed */ }
    // A unit of this client may be running (a session ended from outside, `disconnectApplication`):
    // whatever it leaves open is rolled back by the scheduler before any other unit runs.
    this.#pump();
    while (this.#owner === client) await new Promise((r) => setTimeout(r, 1));
  }

  /** Rolls back what the session of the closed owner left open, and frees the scheduler. */
  async #rollBackOwner(): Promise<void> {
    const { db } = this.#options;
    // exec takes PGlite's lock itself (runExclusive around it would deadlock).
    if (db.isInTransaction()) await db.exec("ROLLBACK").catch(() => {});
    this.#owner = null;
  }

  #checkIdleOwner(): void {
    const owner = this.#owner;
    if (!owner || this.#running || this.#queue.length === 0) return;
    if (Date.now() - owner.lastActivity > this.#options.idleInTransactionMs) {
      void this.#disconnect(owner);
    }
  }

  /**
   * Disconnects every client that named itself `applicationName` in its startup message, rolling
   * back a transaction it left open, as PostgreSQL's `pg_terminate_backend` would: for the
   * sessions of a worker whose thread could not be stopped (a terminated worker's sockets stay
   * open when it was busy). Returns how many were connected.
   *
   * @example
   * ```ts ignore
   * await server.disconnectApplication("upbot-executor/3/k3f9a1"); // 1
   * ```
   */
  async disconnectApplication(applicationName: string): Promise<number> {
    const matching = [...this.#clients].filter((c) => c.applicationName === applicationName);
    for (const client of matching) await this.#disconnect(client);
    return matching.length;
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

/** The name-value pairs of a protocol 3 startup message (length, version, then pairs). */
function startupParameters(msg: Uint8Array): Map<string, string> {
  const parts = new TextDecoder().decode(msg.subarray(8)).split("\0");
  const params = new Map<string, string>();
  for (let i = 0; i + 1 < parts.length && parts[i] !== ""; i += 2) {
    params.set(parts[i]!, parts[i + 1]!);
  }
  return params;
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
