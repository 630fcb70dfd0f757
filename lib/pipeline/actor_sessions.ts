/**
 * @module The database sessions of each actor incarnation: a name per incarnation, and their end
 * when its worker is terminated with them possibly still open.
 *
 * A terminated worker's sockets are closed with it, except when it was busy in JavaScript (a hung
 * actor, the one the heartbeat finds): Deno (up to at least 2.9.6, denoland/deno#35657) then
 * leaves its thread running and its sockets open. Its sessions would keep a transaction's locks
 * (on the embedded database, the whole database) until the idle-in-transaction limit, and its
 * idle connections for good: a few hangs would use up the embedded server's connections. Each
 * incarnation's clients therefore name themselves `upbot-<actor>/<n>/<process>` (`application_name`,
 * unique to this incarnation and this process), and the main thread ends that name's sessions
 * once the worker is terminated, before the next incarnation (which has its own name) matters.
 */
import { createLogger } from "../log.ts";

const log = createLogger("supervisor");

/** Options of {@linkcode ActorSessions}. */
export interface ActorSessionsOptions {
  /** Ends every session named `applicationName`; resolves with how many there were. */
  endSessions: (applicationName: string) => Promise<number>;
  /** Tells the operator that `actor` hung: its thread could not be stopped. */
  onHung?: (actor: string, message: string) => void;
}

/**
 * Names each incarnation's sessions and ends them when its worker is terminated.
 *
 * @example
 * ```ts ignore
 * const sessions = new ActorSessions({ endSessions: (name) => db.endSessions(name) });
 * sessions.nameNext("executor"); // "upbot-executor/1/k3f9a1c2"
 * sessions.terminated("executor", true); // ends that name's sessions, reports the hang
 * ```
 */
export class ActorSessions {
  readonly #options: ActorSessionsOptions;
  /** Tells this process's sessions from another upbot's on the same database. */
  readonly #process = crypto.randomUUID().slice(0, 8);
  readonly #count = new Map<string, number>();
  readonly #current = new Map<string, string>();

  constructor(options: ActorSessionsOptions) {
    this.#options = options;
  }

  /** The name for `actor`'s next incarnation (called once per start). */
  nameNext(actor: string): string {
    const n = (this.#count.get(actor) ?? 0) + 1;
    this.#count.set(actor, n);
    const name = `upbot-${actor}/${n}/${this.#process}`;
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
      const message = `actor ${actor} hung and was restarted; its thread cannot be stopped ` +
        "(a Deno limitation) and keeps a CPU core busy until upbot restarts: restart upbot " +
        "when convenient (exits and reconciliation go on meanwhile)";
      log.error(message, { name: actor });
      try {
        this.#options.onHung?.(actor, message);
      } catch (err) {
        log.error("onHung callback failed", { error: err });
      }
    }
    this.#options.endSessions(name).then(
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
    );
  }
}
