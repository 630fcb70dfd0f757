/**
 * @module The control directory: how `deno task halt/resume/flatten/lost-order` reach a running
 * upbot.
 *
 * The embedded PGlite database cannot be opened by a second process, so the tools never touch
 * the database. They write a command file into `DATA_DIR/control/inbox/` (a temporary file, then
 * a rename, so the running upbot never reads half a file); the running upbot polls the inbox
 * every {@linkcode DEFAULT_POLL_INTERVAL_MS}, validates each file, applies it to the database
 * (the same on PGlite and PostgreSQL: `DATA_DIR` is the control directory even when
 * `DATABASE_URL` is set), then writes `DATA_DIR/control/acks/<id>.json` and deletes the command.
 * The tool waits for that acknowledgement.
 *
 * Commands are applied in the order they were written (file names start with the time). One that
 * the database refuses stays in the inbox and is retried on the next poll; later ones wait behind
 * it. A command refused for the state of things (a resume while a flatten is pending, a
 * lost-order naming no lost order) is acknowledged as refused and removed. A command is applied at most once: its id is stored in `applied_control_commands` in the
 * same transaction as its effect, and a command whose id is stored is only acknowledged again (an
 * acknowledgement that could not be written is retried every poll, logged once; upbot stopped
 * before deleting the file). A file that is not a valid command is moved to `DATA_DIR/control/rejected/` with an error
 * logged (and an acknowledgement saying why, when it has an id). A command written while no upbot
 * runs stays queued and is applied when upbot next starts, before any actor starts.
 */
import { join } from "node:path";
import type { Sql } from "../db/connect.ts";
import { createLogger, type Logger } from "../log.ts";
import {
  applyControlCommandOnce,
  type CommandRecord,
  ControlAck,
  ControlCommand,
  type ControlOutcome,
} from "./commands.ts";

/** How often a running upbot looks into the inbox. */
export const DEFAULT_POLL_INTERVAL_MS = 250;

/** A command file larger than this is not a command. */
const MAX_COMMAND_BYTES = 64 * 1024;

/** Acknowledgements nobody collected are deleted after this long. */
const ACK_RETENTION_MS = 24 * 60 * 60 * 1000;

/** Thrown when another process already watches the same control directory. */
export class ControlDirInUseError extends Error {
  constructor(root: string) {
    super(
      `the control directory ${root} is in use by another upbot process; give each upbot its own DATA_DIR`,
    );
    this.name = "ControlDirInUseError";
  }
}

/** The paths of one control directory. */
export interface ControlDirLayout {
  /** `DATA_DIR/control` */
  root: string;
  /** Commands waiting to be applied. */
  inbox: string;
  /** Acknowledgements, one per applied (or refused) command, named `<id>.json`. */
  acks: string;
  /** Files that were not valid commands. */
  rejected: string;
  /** Held (OS file lock) by the one upbot that watches this directory. */
  lock: string;
}

/** The control directory under `dataDir`. */
export function controlDirLayout(dataDir: string): ControlDirLayout {
  const root = join(dataDir, "control");
  return {
    root,
    inbox: join(root, "inbox"),
    acks: join(root, "acks"),
    rejected: join(root, "rejected"),
    lock: join(root, "watcher.lock"),
  };
}

async function ensureDirs(layout: ControlDirLayout): Promise<void> {
  // Owner only: whoever can write to the inbox can halt, resume or flatten. (Directories made by
  // an older version keep their mode.)
  for (const dir of [layout.root, layout.inbox, layout.acks, layout.rejected]) {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  }
}

/** Writes `text` to `path` through a temporary file in the same directory and a rename. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const dir = join(path, "..");
  const temp = join(dir, `.tmp-${crypto.randomUUID()}`);
  try {
    await Deno.writeTextFile(temp, text);
    await Deno.rename(temp, path);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw err;
  }
}

/** The inbox file name of `command`: issue time first, so names sort in the order written. */
function commandFileName(command: ControlCommand): string {
  const ms = String(Date.parse(command.issued_at)).padStart(15, "0");
  return `${ms}-${command.id}.json`;
}

/**
 * Queues `command` in the inbox (atomically) and returns the file's path.
 *
 * @example
 * ```ts ignore
 * const layout = controlDirLayout("./data");
 * const command = newControlCommand({ action: "halt", scope: "global", reason: "maintenance" });
 * await enqueueControlCommand(layout, command);
 * const ack = await waitForControlAck(layout, command.id, { timeoutMs: 5000 });
 * ```
 */
export async function enqueueControlCommand(
  layout: ControlDirLayout,
  command: ControlCommand,
): Promise<string> {
  await ensureDirs(layout);
  const path = join(layout.inbox, commandFileName(ControlCommand.parse(command)));
  await writeAtomically(path, JSON.stringify(command) + "\n");
  return path;
}

/**
 * Waits for the acknowledgement of command `id`, deletes it and returns it; null after
 * `timeoutMs` (the command then stays queued).
 *
 * @throws {Error} when the acknowledgement file is not a valid acknowledgement.
 */
export async function waitForControlAck(
  layout: ControlDirLayout,
  id: string,
  options: { timeoutMs: number; pollIntervalMs?: number },
): Promise<ControlAck | null> {
  const path = join(layout.acks, `${id}.json`);
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    let text: string | null = null;
    try {
      text = await Deno.readTextFile(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    if (text !== null) {
      const ack = ControlAck.parse(JSON.parse(text));
      await Deno.remove(path).catch(() => {});
      return ack;
    }
    if (Date.now() >= deadline) return null;
    await new Promise((resolve) => setTimeout(resolve, options.pollIntervalMs ?? 100));
  }
}

/** The names of the commands waiting in the inbox, oldest first. */
export async function queuedControlCommands(layout: ControlDirLayout): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(layout.inbox)) {
      if (entry.isFile && entry.name.endsWith(".json") && !entry.name.startsWith(".")) {
        names.push(entry.name);
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return names.sort();
}

/** Options of {@linkcode ControlDirWatcher}. */
export interface ControlDirWatcherOptions {
  layout: ControlDirLayout;
  /** Where the commands are applied. */
  sql: Sql;
  /** @default {DEFAULT_POLL_INTERVAL_MS} */
  pollIntervalMs?: number;
  /** Called after each applied command (upbot wakes the executor). */
  onApplied?: (command: ControlCommand, outcome: ControlOutcome) => void;
  /** @default {createLogger("control")} */
  log?: Logger;
}

/**
 * Applies the commands that appear in a control directory's inbox to the database.
 *
 * @example
 * ```ts ignore
 * const watcher = new ControlDirWatcher({ layout: controlDirLayout(config.DATA_DIR), sql });
 * await watcher.claim();
 * await watcher.processInbox(); // what was queued while upbot was down
 * watcher.start();
 * // ...
 * await watcher.stop();
 * ```
 */
export class ControlDirWatcher {
  #options: ControlDirWatcherOptions;
  #log: Logger;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pass: Promise<void> | undefined;
  #stopped = false;
  #lock: Deno.FsFile | undefined;
  /** Files whose apply failed, logged once each (they are retried every poll). */
  #failing = new Set<string>();
  /**
   * Files of applied commands whose acknowledgement could not be written, logged once each: the
   * acknowledgement is written again every poll (the command is never applied again).
   */
  #ackPending = new Set<string>();

  constructor(options: ControlDirWatcherOptions) {
    this.#options = options;
    this.#log = options.log ?? createLogger("control");
  }

  /**
   * Takes the directory's lock, so that two upbots (say, on two PostgreSQL databases) never
   * share one control directory and take each other's commands. Released by `stop`, or when the
   * process dies.
   *
   * @throws {ControlDirInUseError} when another process holds it.
   */
  async claim(): Promise<void> {
    if (this.#lock) return;
    await ensureDirs(this.#options.layout);
    const lock = await Deno.open(this.#options.layout.lock, { create: true, write: true });
    if (!(await lock.tryLock(true))) {
      lock.close();
      throw new ControlDirInUseError(this.#options.layout.root);
    }
    this.#lock = lock;
  }

  /**
   * Handles every command now in the inbox, oldest first; returns how many were applied. Stops at
   * the first one the database refuses (it stays, to be retried).
   */
  async processInbox(): Promise<number> {
    const layout = this.#options.layout;
    await ensureDirs(layout);
    let applied = 0;
    for (const name of await queuedControlCommands(layout)) {
      const outcome = await this.#handle(name);
      if (outcome === "retry") break;
      if (outcome === "applied") applied++;
    }
    return applied;
  }

  /** Starts polling the inbox (after an immediate first pass). */
  start(): void {
    if (this.#stopped || this.#timer !== undefined || this.#pass !== undefined) return;
    this.#tick(true);
  }

  /** Stops polling, waits for a pass under way and releases the lock. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#pass;
    const lock = this.#lock;
    this.#lock = undefined;
    if (lock) {
      await lock.unlock().catch(() => {});
      lock.close();
    }
  }

  #tick(first = false): void {
    this.#timer = undefined;
    const pass = first ? this.#pruneAcks().then(() => this.processInbox()) : this.processInbox();
    this.#pass = pass
      .then(() => {}, (err) => {
        this.#log.error("control directory pass failed", { error: errorText(err) });
      })
      .finally(() => {
        this.#pass = undefined;
        if (!this.#stopped) {
          this.#timer = setTimeout(
            () => this.#tick(),
            this.#options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
          );
        }
      });
  }

  async #handle(name: string): Promise<"applied" | "skipped" | "retry"> {
    const layout = this.#options.layout;
    const path = join(layout.inbox, name);
    let text: string;
    try {
      const info = await Deno.stat(path);
      if (info.size > MAX_COMMAND_BYTES) {
        await this.#reject(
          name,
          null,
          `file is ${info.size} bytes, more than ${MAX_COMMAND_BYTES}`,
        );
        return "skipped";
      }
      text = await Deno.readTextFile(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return "skipped";
      throw err;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      await this.#reject(name, null, `not JSON: ${(err as Error).message}`);
      return "skipped";
    }
    const parsed = ControlCommand.safeParse(raw);
    if (!parsed.success) {
      const problem = parsed.error.issues
        .map((i) => `${i.path.join(".") || "command"}: ${i.message}`)
        .join("; ");
      await this.#reject(name, idOf(raw), problem);
      return "skipped";
    }
    const command = parsed.data;
    const ackPath = join(layout.acks, `${command.id}.json`);
    if (await isFile(ackPath)) {
      // Applied before a crash, or a copy of an applied command: never apply twice.
      await Deno.remove(path).catch(() => {});
      this.#ackPending.delete(name);
      this.#log.warn("control command already acknowledged; file removed", { file: name });
      return "skipped";
    }
    let record: CommandRecord;
    try {
      // The command's id is stored with its effect: whatever happens to the files below, it is
      // never applied again.
      record = await applyControlCommandOnce(this.#options.sql, command, "cli");
    } catch (err) {
      if (!this.#failing.has(name)) {
        this.#failing.add(name);
        this.#log.error("control command could not be applied; retrying", {
          file: name,
          action: command.action,
          error: errorText(err),
        });
      }
      return "retry";
    }
    this.#failing.delete(name);
    if (record.kind === "already") {
      // Applied before: its acknowledgement could not be written then, or upbot stopped before
      // removing the file (the tool may have read the acknowledgement already). Acknowledge again.
      const wasPending = this.#ackPending.has(name);
      if (await this.#acknowledge(name, ackPath, record.ack)) {
        await Deno.remove(path).catch(() => {});
        if (wasPending) {
          this.#log.info("control command acknowledged at last; file removed", { file: name });
        } else {
          this.#log.warn("control command already applied; acknowledged again, file removed", {
            file: name,
            action: command.action,
          });
        }
      }
      return "skipped";
    }
    if (record.kind === "refused") {
      // Refused for the state of things (a resume while a flatten is pending, a lost-order naming
      // no lost order): its tool says why; trying it again every poll would only refuse it again,
      // or apply it much later.
      this.#log.error("control command refused", {
        file: name,
        action: command.action,
        problem: record.ack.message,
      });
      if (await this.#acknowledge(name, ackPath, record.ack)) {
        await Deno.remove(path).catch(() => {});
      }
      return "skipped";
    }
    const { ack, outcome } = record;
    if (await this.#acknowledge(name, ackPath, ack)) await Deno.remove(path).catch(() => {});
    const fields = {
      action: command.action,
      ...(command.action === "lost-order"
        ? { identifier: command.identifier, uuid: command.uuid }
        : { scope: "scope" in command ? command.scope : "global" }),
      ...("reason" in command ? { reason: command.reason } : {}),
      by: "cli",
      ...(outcome.flattenId !== null ? { flatten_id: outcome.flattenId } : {}),
    };
    if (command.action === "resume") this.#log.info(outcome.message, fields);
    else this.#log.warn(outcome.message, fields);
    try {
      this.#options.onApplied?.(command, outcome);
    } catch (err) {
      this.#log.error("onApplied callback failed", { error: errorText(err) });
    }
    return "applied";
  }

  /**
   * Writes the acknowledgement of an applied command; false (logged once per file) when it cannot
   * be written: the command stays applied and its file stays in the inbox, to be acknowledged on a
   * later poll.
   */
  async #acknowledge(name: string, ackPath: string, ack: ControlAck): Promise<boolean> {
    try {
      await writeAtomically(ackPath, JSON.stringify(ack) + "\n");
    } catch (err) {
      if (!this.#ackPending.has(name)) {
        this.#ackPending.add(name);
        this.#log.error(
          `control command ${
            ack.ok ? "applied" : "refused"
          }, but its acknowledgement could not be written; it is not applied again, the acknowledgement is retried`,
          { file: name, error: errorText(err) },
        );
      }
      return false;
    }
    this.#ackPending.delete(name);
    return true;
  }

  /** Moves a bad file aside, logs why, and acknowledges it as refused when it names an id. */
  async #reject(name: string, id: string | null, problem: string): Promise<void> {
    const layout = this.#options.layout;
    const target = join(layout.rejected, name);
    try {
      await Deno.rename(join(layout.inbox, name), target);
    } catch (err) {
      // It must leave the inbox either way, or it would be refused again every poll.
      await Deno.remove(join(layout.inbox, name)).catch(() => {});
      this.#log.warn("could not move a bad control file aside; removed", {
        file: name,
        error: errorText(err),
      });
    }
    this.#log.error("control file is not a valid command; moved aside", {
      file: name,
      moved_to: target,
      problem,
    });
    if (id === null) return;
    const ack: ControlAck = {
      id,
      ok: false,
      message: `command refused: ${problem}`,
      applied_at: new Date().toISOString(),
      flatten_id: null,
      states: [],
    };
    await writeAtomically(join(layout.acks, `${id}.json`), JSON.stringify(ack) + "\n")
      .catch(() => {});
  }

  async #pruneAcks(): Promise<void> {
    const now = Date.now();
    try {
      for await (const entry of Deno.readDir(this.#options.layout.acks)) {
        if (!entry.isFile) continue;
        const path = join(this.#options.layout.acks, entry.name);
        const info = await Deno.stat(path).catch(() => null);
        const at = info?.mtime?.getTime();
        if (at !== undefined && now - at > ACK_RETENTION_MS) {
          await Deno.remove(path).catch(() => {});
        }
      }
    } catch {
      // Pruning is housekeeping only.
    }
  }
}

/** The command's id when `raw` carries a valid one (so its tool learns why it was refused). */
function idOf(raw: unknown): string | null {
  if (raw === null || typeof raw !== "object" || !("id" in raw)) return null;
  const id = (raw as { id: unknown }).id;
  return typeof id === "string" && /^[0-9a-f-]{36}$/i.test(id) ? id : null;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
