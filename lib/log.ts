/**
 * @module Structured logging: one JSON object per line (or a readable line on a terminal).
 *
 * This is the one module that prints. Every line carries `time`, `level`, `actor` and `msg`,
 * plus the caller's fields. Registered secrets are masked in every line, whatever field
 * they hide in, as a last line of defence behind "never log a secret" in the callers.
 */

/** Severity of a log line, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** How lines are written: `json` (one object per line) or `pretty` (for people at a terminal). */
export type LogFormat = "json" | "pretty";

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Extra structured fields of a log line. */
export type LogFields = Record<string, unknown>;

/** A sink receives each finished line; tests swap it to capture output. */
export type LogSink = (line: string, level: LogLevel) => void;

const encoder = new TextEncoder();

const defaultSink: LogSink = (line, level) => {
  const bytes = encoder.encode(line + "\n");
  (level === "error" || level === "warn" ? Deno.stderr : Deno.stdout).writeSync(bytes);
};

const state: {
  level: LogLevel;
  format: LogFormat;
  sink: LogSink;
  secrets: string[];
} = { level: "info", format: "json", sink: defaultSink, secrets: [] };

/** Logging settings, as passed from the supervisor to each worker. */
export interface LogSettings {
  level: LogLevel;
  format: LogFormat;
}

/** Sets the level and format for this thread (each worker calls it with the supervisor's values). */
export function configureLogging(settings: Partial<LogSettings>): void {
  if (settings.level) state.level = settings.level;
  if (settings.format) state.format = settings.format;
}

/** The logging settings in force in this thread. */
export function loggingSettings(): LogSettings {
  return { level: state.level, format: state.format };
}

/** Replaces where lines go; returns a function that restores the previous sink. */
export function setLogSink(sink: LogSink): () => void {
  const previous = state.sink;
  state.sink = sink;
  return () => {
    state.sink = previous;
  };
}

/**
 * Registers a secret value so that it is masked as `***` in every line written by this thread.
 * Values shorter than 4 characters are ignored (masking them would garble ordinary text).
 *
 * The forms a secret takes on its way into a line are masked too: escaped once and twice as a
 * JSON string (a JSON line escapes `"` and `\`; a field holding JSON, such as an answer's body,
 * escapes again) and percent-encoded (a URL or query string), so that a secret holding such
 * characters cannot slip past as its escaped form.
 */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < 4) return;
  const escaped = jsonEscaped(value);
  for (const form of [value, escaped, jsonEscaped(escaped), encodeURIComponent(value)]) {
    if (!state.secrets.includes(form)) state.secrets.push(form);
  }
  state.secrets.sort((a, b) => b.length - a.length);
}

/** `text` as it appears between the quotes of a JSON string. */
function jsonEscaped(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}

/** Masks every registered secret in `text`. */
export function redact(text: string): string {
  let out = text;
  for (const secret of state.secrets) out = out.split(secret).join("***");
  return out;
}

function serializeError(err: unknown): unknown {
  if (err instanceof Error) {
    const out: Record<string, unknown> = { name: err.name, message: err.message };
    for (const [k, v] of Object.entries(err)) out[k] = v;
    if (err.stack) out.stack = err.stack;
    return out;
  }
  return err;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return serializeError(value);
  return value;
}

function formatPretty(record: Record<string, unknown>): string {
  const { time, level, actor, msg, ...fields } = record;
  const clock = String(time).slice(11, 23);
  const extras = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v, jsonReplacer)}`)
    .join(" ");
  const lvl = String(level).toUpperCase().padEnd(5);
  return `${clock} ${lvl} [${actor}] ${msg}${extras ? " " + extras : ""}`;
}

/** Writes one line at `level` for `actor`. Prefer a {@linkcode Logger}. */
export function writeLog(level: LogLevel, actor: string, msg: string, fields?: LogFields): void {
  if (LEVEL_RANK[level] < LEVEL_RANK[state.level]) return;
  const record: Record<string, unknown> = {
    time: new Date().toISOString(),
    level,
    actor,
    msg,
    ...fields,
  };
  const line = state.format === "json"
    ? JSON.stringify(record, jsonReplacer)
    : formatPretty(record);
  state.sink(redact(line), level);
}

/** A logger bound to one actor (or component) name. */
export interface Logger {
  readonly actor: string;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

/**
 * Creates a logger whose lines name `actor`.
 *
 * @example
 * ```ts
 * const log = createLogger("executor");
 * log.info("Shadow [EXIT_LONG]: side=ask ord_type=market volume=0.002 (no API call)", { paper_trade_id: 17 });
 * ```
 */
export function createLogger(actor: string): Logger {
  return {
    actor,
    debug: (msg, fields) => writeLog("debug", actor, msg, fields),
    info: (msg, fields) => writeLog("info", actor, msg, fields),
    warn: (msg, fields) => writeLog("warn", actor, msg, fields),
    error: (msg, fields) => writeLog("error", actor, msg, fields),
  };
}
