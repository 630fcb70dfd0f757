/**
 * @module Lifts the supervisor's halt once a person resumed the stored one. The supervisor halts
 * entries in memory (every actor learns it at once) and upbot stores the same halt as the global
 * one; a resume (`deno task resume`, the dashboard, `POST /api/control/resume`) lifts the stored
 * halt. {@linkcode watchHaltLift} notices it and lifts the supervisor's too, so a resume works
 * without restarting upbot, once the critical actor that failed runs again. The halt must have
 * been stored first: before that, a global scope not halted says nothing about this halt.
 */
import type { Sql } from "../db/connect.ts";
import { GLOBAL_SCOPE } from "../control/trading_state.ts";
import type { Logger } from "../log.ts";

/** How often the stored global state is read while the supervisor's halt holds (ms). */
export const HALT_LIFT_CHECK_MS = 2_000;

/** What {@linkcode watchHaltLift} reads and lifts. */
export interface HaltLiftSources {
  /** Whether the supervisor's halt holds. */
  halted(): boolean;
  /** Lifts it (`UpbotSupervisor.resume`). */
  resume(by: string): void;
  /**
   * Critical actors not running (failed for good and started again once a minute, or starting),
   * by name: while any is, a resume of the stored halt does not lift this one (entries would
   * start and halt again at its next failure). @default {() => []}
   */
  criticalDown?(): string[];
}

/** The watch: told when the halt is stored; stopped with upbot. */
export interface HaltLiftWatch {
  /** The supervisor halted (again): its halt is not stored yet. */
  halting(): void;
  /** The supervisor's halt is stored as the global halt. */
  stored(): void;
  /** Stops the watch and waits for a read in flight. */
  stop(): Promise<void>;
}

/**
 * Starts watching: while the supervisor's halt holds and has been stored, reads the stored global
 * scope every `intervalMs`; once it is no longer halted (a person resumed it), lifts the
 * supervisor's halt. A failed read is logged and tried again at the next tick.
 *
 * @example
 * ```ts ignore
 * const watch = watchHaltLift(sql, { halted: () => sup.tradingState === "halted", resume: (by) => sup.resume(by) }, log);
 * // onTradingHalt: watch.halting(); then, once haltEntries(...) stored it: watch.stored();
 * ```
 */
export function watchHaltLift(
  sql: Sql,
  sources: HaltLiftSources,
  log: Logger,
  intervalMs = HALT_LIFT_CHECK_MS,
): HaltLiftWatch {
  let stored = false;
  let waitLogged = false;
  let running: Promise<void> | null = null;
  const tick = () => {
    if (running || !stored || !sources.halted()) return;
    running = (async () => {
      try {
        const [row] = await sql<{ halted: boolean; by: string }[]>`
          select halted, changed_by as by from trading_state where scope = ${GLOBAL_SCOPE}`;
        // A halt of the supervisor stored again in the meantime (`halting`) is not this one.
        if (!stored || !sources.halted() || !row || row.halted) return;
        const down = sources.criticalDown?.() ?? [];
        if (down.length > 0) {
          if (!waitLogged) {
            log.warn(
              `The global halt was resumed by ${row.by}, but ${
                down.join(", ")
              } is not running: the supervisor's halt holds until it runs again`,
            );
          }
          waitLogged = true;
          return;
        }
        waitLogged = false;
        log.warn(`The global halt was resumed by ${row.by}: the supervisor's halt is lifted`);
        sources.resume(row.by);
      } catch (err) {
        log.warn("Reading the stored trading state failed; trying again", {
          error: (err as Error).message,
        });
      } finally {
        running = null;
      }
    })();
  };
  const timer = setInterval(tick, intervalMs);
  return {
    halting() {
      stored = false;
    },
    stored() {
      stored = true;
    },
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
