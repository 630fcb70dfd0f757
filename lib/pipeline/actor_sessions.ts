/**
 * @module The database sessions of each actor incarnation: a name per incarnation, and their end
 * when its worker is terminated with them possibly still open.
 *
 * A terminated worker's sockets are closed with it, except when it was busy in JavaScript (a hung
 * actor, the one the heartbeat finds): Deno (up to at least 2.9.6, denoland/deno#35657) then
 * leaves its thread running and its sockets open until that JavaScript returns, which an endless
 * loop never does. Its sessions would keep a transaction's locks (on the embedded database, the
 * whole database) until the idle-in-transaction limit, and its idle connections for good: a few
 * hangs would use up the embedded server's connections. Each incarnation's clients therefore
 * name themselves `upbot-<actor>/<generation>.<incarnation>/<process>` (`application_name`,
 * unique to this incarnation and this process: the generation counts the supervisors of this
 * process, as a leader that lost its lease starts a new one), and the main thread ends that
 * name's sessions once the worker is terminated.
 */
import { createLogger } from "../log.ts";

const log = createLogger("supervisor");

/** Supervisors of this process so far (see the module's doc). */
let generations = 0;

/** How long a stop waits for session endings (the database may be what failed). */
const SETTLE_LIMIT_MS = 5_000;

/** Options of {@linkcode ActorSessions}. */
export interface ActorSessionsOptions {
  /** This process's tag (`Database.processTag`), the last part of every name. */
  processTag: string;
  /** Ends every session named `applicationName`; resolves with how many there were. */
  endSessions: (applicationName: string) => Promise<number>;
  /**
   * An actor hung: its thread may go on using a CPU core. `actors`: every actor of this process
   * that hung so far.
   */
  onHung?: (actors: string[], message: string) => void;
}

/**
 * Names each incarnation's sessions and ends them when its worker is terminated.
 *
 * @example
 * ```ts ignore
 * const sessions = new ActorSessions({
 *   processTag: db.processTag,
 *   endSessions: (name) => db.endSessions(name),
 * });
 * sessions.nameFor("executor", 3); // "upbot-executor/1.3/k3f9a1c2"
 * sessions.terminated("executor", true); // ends that name's sessions, reports the hang
 * ```
 */
export class ActorSessions {
  readonly #options: ActorSessionsOptions;
  readonly #generation = ++generations;
  readonly #current = new Map<string, string>();
  readonly #hung = new Set<string>();
  readonly #ending = new Set<Promise<void>>();

  constructor(options: ActorSessionsOptions) {
    this.#options = options;
  }

  /** The name of the sessions of `actor`'s incarnation `incarnation` (called once per start). */
  nameFor(actor: string, incarnation: number): string {
    const name = `upbot-${actor}/${this.#generation}.${incarnation}/${this.#options.processTag}`;
    this.#current.set(actor, name);
    return name;
  }

  /**
   * `actor`'s worker was terminated without a clean stop (`hung`: it stopped answering
   * heartbeats). Ends its incarnation's sessions; never throws.
   */
  terminated(actor: string, hung: boolean): void {
    const name = this.#current.get(actor);
    if (name === undefined) return;
    if (hung) {
      this.#hung.add(actor);
      const message = `actor ${actor} hung and was restarted; Deno cannot stop its thread, which ` +
        "keeps a CPU core busy until its code returns (never, if it loops for good): restart " +
        "upbot when convenient (exits and reconciliation go on meanwhile)";
      log.error(message, { name: actor });
      try {
        this.#options.onHung?.([...this.#hung], message);
      } catch (err) {
        log.error("onHung callback failed", { error: err });
      }
    }
    const ending = this.#options.endSessions(name).then(
      (ended) => {
        if (ended > 0) {
          log.warn("database sessions of a terminated actor ended", { name: actor, ended });
        }
      },
      (err) =>
        log.warn("could not end a terminated actor's database sessions", {
          name: actor,
          error: err instanceof Error ? err.message : String(err),
        }),
    ).finally(() => this.#ending.delete(ending));
    this.#ending.add(ending);
  }

  /**
   * Resolves once no session ending is under way (before the database closes), or after 5 s:
   * with the database down they would wait for its connect timeout.
   */
  async settled(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = new Promise<void>((resolve) => timer = setTimeout(resolve, SETTLE_LIMIT_MS));
    const all = (async () => {
      while (this.#ending.size > 0) await Promise.all([...this.#ending]);
    })();
    await Promise.race([all, limit]);
    clearTimeout(timer);
  }
}
