/**
 * @module Configuration: every setting from the environment (plus an optional `.env` file),
 * validated with zod into one typed object.
 *
 * The table {@linkcode SETTINGS} is the single source of truth: the schema, the defaults, the
 * README's configuration reference and `.env.example` are all checked against it by tests.
 */
import { z } from "zod";
import { KRW_MARKET_CODE_PATTERN, MARKET_CODE_PATTERN, TRADE_MODES } from "./domain.ts";
import { parseEnvFile } from "./env_file.ts";

/** One documented environment variable. */
export interface Setting {
  /** Variable name, e.g. `HTTP_PORT`. */
  name: string;
  /** zod schema applied to the raw string (or `undefined` when unset). */
  schema: z.ZodType;
  /** The default as a user would write it, or `""` for "unset". */
  defaultText: string;
  /** One sentence for the README and `.env.example`. */
  doc: string;
  /** Secret values are never printed, in errors or anywhere else. */
  secret?: boolean;
}

const MARKET_CODE = MARKET_CODE_PATTERN;

function bool(defaultValue: boolean) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return defaultValue;
      const s = v.trim().toLowerCase();
      if (s === "true" || s === "1" || s === "yes") return true;
      if (s === "false" || s === "0" || s === "no") return false;
      ctx.addIssue({ code: "custom", message: "must be true or false (also 1/0, yes/no)" });
      return z.NEVER;
    });
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T, defaultValue: T[number]) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return defaultValue;
      const s = v.trim();
      if ((values as readonly string[]).includes(s)) return s as T[number];
      ctx.addIssue({ code: "custom", message: `must be one of ${values.join(", ")}` });
      return z.NEVER;
    });
}

function numberSchema(opts: { min?: number; max?: number; int?: boolean }) {
  const range = opts.int ? `an integer${rangeText(opts)}` : `a number${rangeText(opts)}`;
  return (raw: string, ctx: z.RefinementCtx): number => {
    const n = Number(raw.trim());
    const ok = Number.isFinite(n) && (!opts.int || Number.isInteger(n)) &&
      (opts.min === undefined || n >= opts.min) && (opts.max === undefined || n <= opts.max);
    if (ok) return n;
    ctx.addIssue({ code: "custom", message: `must be ${range}` });
    return z.NEVER;
  };
}

/** A number with a default. */
function num(opts: { min?: number; max?: number; int?: boolean }, defaultValue: number) {
  const parse = numberSchema(opts);
  return z.string().optional().transform((v, ctx) =>
    v === undefined || v.trim() === "" ? defaultValue : parse(v, ctx)
  );
}

/** A number that may be unset (`undefined`). */
function optionalNum(opts: { min?: number; max?: number; int?: boolean }) {
  const parse = numberSchema(opts);
  return z.string().optional().transform((v, ctx) =>
    v === undefined || v.trim() === "" ? undefined : parse(v, ctx)
  );
}

function rangeText(opts: { min?: number; max?: number }): string {
  if (opts.min !== undefined && opts.max !== undefined) return ` from ${opts.min} to ${opts.max}`;
  if (opts.min !== undefined) return ` >= ${opts.min}`;
  if (opts.max !== undefined) return ` <= ${opts.max}`;
  return "";
}

function url(protocols: string[], defaultValue: string) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      const s = v === undefined || v.trim() === "" ? defaultValue : v.trim();
      try {
        const u = new URL(s);
        if (protocols.includes(u.protocol)) return s.replace(/\/+$/, "");
      } catch { /* reported below */ }
      ctx.addIssue({
        code: "custom",
        message: `must be a URL starting with ${protocols.map((p) => p + "//").join(" or ")}`,
      });
      return z.NEVER;
    });
}

/** An http(s) URL that may be unset (`undefined`). */
function optionalUrl() {
  return z.string().optional().transform((v, ctx) => {
    if (v === undefined || v.trim() === "") return undefined;
    try {
      const u = new URL(v.trim());
      if (u.protocol === "https:" || u.protocol === "http:") return v.trim();
    } catch { /* reported below */ }
    ctx.addIssue({ code: "custom", message: "must be a URL starting with https:// or http://" });
    return z.NEVER;
  });
}

function text(defaultValue = "") {
  return z.string().optional().transform((v) => (v === undefined ? defaultValue : v.trim()));
}

/** A host name, an IPv4 address or an IPv6 address (optionally in brackets) to bind to. */
function hostAddress(defaultValue: string) {
  return text(defaultValue).pipe(
    z.string().regex(
      /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?)$/,
      "must be a host name or an IP address, e.g. 127.0.0.1 or 0.0.0.0",
    ),
  );
}

function optionalText() {
  return z.string().optional().transform((
    v,
  ) => (v === undefined || v.trim() === "" ? undefined : v.trim()));
}

/** Fewest characters of an API token: a short one can be guessed over the network. */
export const MIN_TOKEN_CHARS = 16;

/** An optional bearer token: unset, or at least {@linkcode MIN_TOKEN_CHARS} characters. */
function token() {
  return optionalText().refine((v) => v === undefined || v.length >= MIN_TOKEN_CHARS, {
    message:
      `must be at least ${MIN_TOKEN_CHARS} characters when set (make one with: openssl rand -hex 32)`,
  });
}

const markets = z
  .string()
  .optional()
  .transform((v, ctx) => {
    const list = (v === undefined || v.trim() === "" ? "KRW-BTC" : v)
      .split(",")
      .map((s) => s.trim().toUpperCase())
      .filter((s) => s !== "");
    const bad = list.filter((m) => !MARKET_CODE.test(m));
    if (list.length === 0 || bad.length > 0) {
      ctx.addIssue({
        code: "custom",
        message: "must be a comma list of market codes like KRW-BTC,KRW-ETH",
      });
      return z.NEVER;
    }
    // Fees, ORDER_KRW_AMOUNT and the 5000 minimum are KRW: a BTC- or USDT-quoted market would
    // be sized and judged in the wrong currency.
    const notKrw = [...new Set(list.filter((m) => !KRW_MARKET_CODE_PATTERN.test(m)))];
    if (notKrw.length > 0) {
      ctx.addIssue({
        code: "custom",
        message: `must list KRW markets only (orders, fees and minimums are in KRW): ${
          notKrw.join(", ")
        } ${notKrw.length === 1 ? "is" : "are"} not quoted in KRW`,
      });
      return z.NEVER;
    }
    return [...new Set(list)];
  });

const databaseUrl = z
  .string()
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || v.trim() === "") return undefined;
    let u: URL | undefined;
    try {
      u = new URL(v.trim());
    } catch { /* reported below */ }
    if (u?.protocol === "postgres:" || u?.protocol === "postgresql:") {
      // The user name and password are percent-decoded when connecting (and for masking): a `%`
      // not followed by two hex digits would fail there with a bare URIError. Never shown here.
      const malformed = [["user name", u.username], ["password", u.password]]
        .filter(([, part]) => !decodes(part!)).map(([what]) => what);
      if (malformed.length === 0) return v.trim();
      ctx.addIssue({
        code: "custom",
        message: `the ${
          malformed.join(" and the ")
        } must be percent-encoded: every % must start %XX with two hex digits (write a literal % as %25)`,
      });
      return z.NEVER;
    }
    ctx.addIssue({
      code: "custom",
      message: "must be a URL like postgres://user:password@host:5432/dbname",
    });
    return z.NEVER;
  });

/** Whether `text` percent-decodes (`decodeURIComponent` does not throw). */
function decodes(text: string): boolean {
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
}

/** Fewest ms `UPBIT_REST_TIMEOUT_MS` allows. */
export const REST_TIMEOUT_MIN_MS = 1000;
/** Most ms `UPBIT_REST_TIMEOUT_MS` allows (2 minutes). */
export const REST_TIMEOUT_MAX_MS = 120_000;

/** Every environment variable upbot reads, in README order. */
export const SETTINGS = [
  // Trading mode and the live guard.
  {
    name: "UPBIT_TRADE_MODE",
    schema: oneOf(TRADE_MODES, "shadow"),
    defaultText: "shadow",
    doc:
      "Executor mode: shadow logs orders only, test calls POST /v1/orders/test, live places real orders (only when the whole live guard holds).",
  },
  {
    name: "LIVE_TRADING_ENABLED",
    schema: bool(false),
    defaultText: "false",
    doc: "Live guard 1 of 5: must be true for live orders.",
  },
  {
    name: "LIVE_GUARD_PHRASE",
    schema: text(""),
    defaultText: "",
    doc: "Live guard: must be exactly I_CONFIRM_LIVE_TRADING for live orders.",
  },
  {
    name: "PAPER_POLICY_PROFILE",
    schema: oneOf(["test", "default"], "test"),
    defaultText: "test",
    doc:
      "Evaluator profile: test trades often to exercise the pipeline; default is stricter. Live orders are refused with test.",
  },
  {
    name: "SHADOW_ENABLED",
    schema: bool(true),
    defaultText: "true",
    doc: "Whether the executor records shadow attempts at all (false: paper trades only).",
  },
  {
    name: "UPBIT_ACCESS_KEY",
    schema: optionalText(),
    defaultText: "",
    doc: "Upbit Open API access key. Needed for test and live modes and for the account actor.",
    secret: true,
  },
  {
    name: "UPBIT_SECRET_KEY",
    schema: optionalText(),
    defaultText: "",
    doc: "Upbit Open API secret key (never logged or stored).",
    secret: true,
  },
  {
    name: "UPBIT_ORDER_TEST_ENABLED",
    schema: bool(false),
    defaultText: "false",
    doc: "deno task smoke: also send a minimal POST /v1/orders/test.",
  },
  // Markets and venue.
  {
    name: "MARKETS",
    schema: markets,
    defaultText: "KRW-BTC",
    doc:
      "Comma list of KRW markets to trade, e.g. KRW-BTC,KRW-ETH (other quote currencies are refused).",
  },
  {
    name: "UPBIT_REST_URL",
    schema: url(["https:", "http:"], "https://api.upbit.com"),
    defaultText: "https://api.upbit.com",
    doc:
      "Upbit REST base URL (point it at the simulator for offline runs). With keys set: https://, or http:// to a loopback host only.",
  },
  {
    name: "UPBIT_WS_URL",
    schema: url(["wss:", "ws:"], "wss://api.upbit.com/websocket/v1"),
    defaultText: "wss://api.upbit.com/websocket/v1",
    doc:
      "Upbit public WebSocket URL; the private stream is this URL + /private. With keys set: wss://, or ws:// to a loopback host only.",
  },
  {
    name: "UPBIT_REST_TIMEOUT_MS",
    // Below 1 s a healthy but distant Upbit would time out most calls: every order would come
    // back outcome-unknown (looked up before any re-send) and every read be retried. Above 2 min
    // a dead connection would hold an actor, and an order's outcome, that long.
    schema: num({ min: REST_TIMEOUT_MIN_MS, max: REST_TIMEOUT_MAX_MS, int: true }, 10000),
    defaultText: "10000",
    doc:
      "Milliseconds one Upbit REST request may take before it is abandoned: a read is retried, an order creation is looked up by identifier before any re-send. Raise it on a slow or distant link.",
  },
  // Executor and order-poller.
  {
    name: "LIVE_ORDER_POLL_INTERVAL_SEC",
    schema: num({ min: 0.1, max: 3600 }, 5),
    defaultText: "5",
    doc: "Seconds between polls of a submitted live order.",
  },
  {
    name: "LIVE_ORDER_MAX_POLLS",
    schema: num({ min: 1, max: 10000, int: true }, 24),
    defaultText: "24",
    doc: "Polls of one live order before it is cancelled as stuck.",
  },
  {
    name: "ORDER_KRW_AMOUNT",
    // Upbit's minimum order is 5000 KRW on both sides: an entry of exactly 5000 could never be
    // sold again after the smallest loss, so entries start at 6000 (room for a 16% drop).
    schema: num({ min: 6000, max: 1_000_000_000, int: true }, 10000),
    defaultText: "10000",
    doc:
      "Whole KRW spent by one entry (market buy); at least 6000 so a losing exit stays above Upbit's 5000 minimum.",
  },
  {
    name: "MAX_ORDERS_PER_MIN",
    schema: num({ min: 1, max: 600, int: true }, 6),
    defaultText: "6",
    doc: "Cap on exchange orders (test or live) per minute; excess attempts wait.",
  },
  {
    name: "EXECUTOR_MAX_RETRIES",
    schema: num({ min: 0, max: 20, int: true }, 3),
    defaultText: "3",
    doc: "How often an attempt that ended in error is retried.",
  },
  {
    name: "EXECUTOR_LANDING_WAIT_SEC",
    // 0 would turn the wait off: an identifier Upbit says is used, with no order found under it
    // yet, would be replaced at once, and a create still queued at Upbit would then land as a
    // second order.
    schema: num({ min: 1, max: 3600 }, 60),
    defaultText: "60",
    doc:
      "How long a live create whose answer never came may still land at Upbit: until then the order is looked up, not judged again or given up, and no fresh identifier is used. Shorter than Upbit takes to process a queued create, a second order could be placed: keep the default against Upbit.",
  },
  {
    name: "EXECUTOR_MAX_SIGNAL_AGE_SEC",
    schema: num({ min: 1, max: 86400 }, 60),
    defaultText: "60",
    doc:
      "A paper trade older than this is not sent to Upbit (test/live) but recorded as skipped, e.g. after downtime.",
  },
  // Risk gate: entry limits (no limit here ever blocks an exit).
  {
    name: "RISK_MAX_ORDER_KRW",
    schema: num({ min: 5000, max: 1_000_000_000, int: true }, 50000),
    defaultText: "50000",
    doc: "Largest KRW total of one entry; ORDER_KRW_AMOUNT above it is a configuration error.",
  },
  {
    name: "RISK_MAX_OPEN_POSITIONS",
    schema: num({ min: 1, max: 100, int: true }, 3),
    defaultText: "3",
    doc:
      "Most markets held at once (ledger positions plus entries in flight); an entry in another market waits for a slot.",
  },
  {
    name: "RISK_MAX_EXPOSURE_KRW",
    schema: num({ min: 5000, max: 10_000_000_000, int: true }, 100000),
    defaultText: "100000",
    doc:
      "Most KRW held in coins at once (open volume at the last price plus entries in flight); an entry past it is refused. Below ORDER_KRW_AMOUNT is a configuration error.",
  },
  {
    name: "RISK_MAX_DAILY_LOSS_KRW",
    schema: num({ min: 1, max: 10_000_000_000, int: true }, 20000),
    defaultText: "20000",
    doc:
      "Realised loss per KST day (from 00:00 Asia/Seoul) that stops entries until the next KST day or a resume; exits go on.",
  },
  {
    name: "ACCOUNT_POLL_INTERVAL_SEC",
    schema: num({ min: 1, max: 3600 }, 10),
    defaultText: "10",
    doc: "Seconds between balance polls by the account actor.",
  },
  {
    name: "RECONCILE_OUTAGE_LIMIT_SEC",
    schema: num({ min: 1, max: 3600 }, 60),
    defaultText: "60",
    doc:
      "Live mode: seconds the private WebSocket or the REST connection may be lost before the reconciliation gate closes (no order of any kind until upbot has reconciled with the exchange again).",
  },
  {
    name: "RECONCILE_INTERVAL_MIN",
    schema: num({ min: 0, max: 1440 }, 60),
    defaultText: "60",
    doc:
      "Live mode: minutes between routine reconciliations with the exchange (orders of upbot's it does not record, balances below the ledger), besides the one at a live start and after an outage; 0 turns them off. A routine run does not close the gate: orders go on meanwhile, and a failed run is tried again after RECONCILE_RETRY_SEC.",
  },
  {
    name: "RECONCILE_RETRY_SEC",
    schema: num({ min: 1, max: 600 }, 10),
    defaultText: "10",
    doc:
      "Live mode: seconds between reconciliation attempts after one failed (Upbit unreachable); no order of any kind goes out until one completes.",
  },
  {
    name: "MARKET_STATUS_POLL_INTERVAL_SEC",
    schema: num({ min: 5, max: 3600 }, 60),
    defaultText: "60",
    doc:
      "Seconds between reads of the markets' warning, caution and delisting state (feed actor; two quotation requests each).",
  },
  // Evaluator overrides (unset: the profile's value).
  {
    name: "EVAL_TP_PCT",
    schema: optionalNum({ min: 0.0001, max: 50 }),
    defaultText: "",
    doc: "Override the profile's take-profit barrier, in percent.",
  },
  {
    name: "EVAL_SL_PCT",
    schema: optionalNum({ min: 0.0001, max: 50 }),
    defaultText: "",
    doc: "Override the profile's stop-loss barrier, in percent.",
  },
  {
    name: "EVAL_HORIZON_SEC",
    schema: optionalNum({ min: 1, max: 86400, int: true }),
    defaultText: "",
    doc: "Override the profile's barrier horizon (seconds).",
  },
  {
    name: "EVAL_ENTRY_EV_MIN",
    schema: optionalNum({ min: -100, max: 100 }),
    defaultText: "",
    doc: "Override the profile's entry threshold: enter when EV (percent) is above it.",
  },
  {
    name: "EVAL_EXIT_EV_MIN",
    schema: optionalNum({ min: -100, max: 100 }),
    defaultText: "",
    doc:
      "Override the profile's exit threshold: exit with EV_BAD when EV (percent) falls below it (only while the skill gate is open and the model has learned).",
  },
  {
    name: "EVAL_SKILL_GATE",
    schema: oneOf(["profile", "on", "off"], "profile"),
    defaultText: "profile",
    doc:
      "Skill gate: entries only while the online model beats the base rate (docs/strategy.md). profile: the profile's (on for default, off for test); on: default's settings; off: no gate.",
  },
  // Retention (0 days: keep that table forever). Paper trades and order attempts are always kept.
  {
    name: "RETENTION_MARKET_BARS_DAYS",
    schema: num({ min: 0, max: 36500, int: true }, 30),
    defaultText: "30",
    doc:
      "Days of 1-second bars kept in market_1s (each market's newest bar is always kept); 0 keeps them forever.",
  },
  {
    name: "RETENTION_LABELS_DAYS",
    schema: num({ min: 0, max: 36500, int: true }, 30),
    defaultText: "30",
    doc: "Days of barrier_labels kept; 0 keeps them forever.",
  },
  {
    name: "RETENTION_PREDICTIONS_DAYS",
    schema: num({ min: 0, max: 36500, int: true }, 30),
    defaultText: "30",
    doc: "Days of predictions kept; 0 keeps them forever.",
  },
  {
    name: "RETENTION_ORDER_SNAPSHOTS_DAYS",
    schema: num({ min: 0, max: 36500, int: true }, 90),
    defaultText: "90",
    doc:
      "Days of upbit_order_snapshots kept (each order's newest snapshot is always kept); 0 keeps them forever.",
  },
  {
    name: "RETENTION_ACCOUNT_SNAPSHOTS_DAYS",
    schema: num({ min: 0, max: 36500, int: true }, 30),
    defaultText: "30",
    doc:
      "Days of upbit_account_snapshots kept (each currency's newest snapshot is always kept); 0 keeps them forever.",
  },
  {
    name: "RETENTION_INTERVAL_MIN",
    schema: num({ min: 1, max: 1440, int: true }, 15),
    defaultText: "15",
    doc: "Minutes between two pruning runs (the first runs a minute after start-up).",
  },
  {
    name: "RETENTION_BATCH_ROWS",
    schema: num({ min: 100, max: 100000, int: true }, 5000),
    defaultText: "5000",
    doc:
      "Most rows one pruning statement deletes; statements are spaced so the feed's writes go first.",
  },
  // Server, storage, logging.
  {
    name: "HTTP_HOST",
    schema: hostAddress("127.0.0.1"),
    defaultText: "127.0.0.1",
    doc: "Address the HTTP server binds to.",
  },
  {
    name: "HTTP_PORT",
    schema: num({ min: 0, max: 65535, int: true }, 8501),
    defaultText: "8501",
    doc: "Port of the HTTP server (0 picks a free port).",
  },
  {
    name: "API_TOKEN",
    schema: token(),
    defaultText: "",
    doc:
      "Bearer token for the HTTP controls, and for every endpoint but /healthz and /readyz when HTTP_HOST is not loopback (then required). At least 16 characters.",
    secret: true,
  },
  {
    name: "API_READ_TOKEN",
    schema: token(),
    defaultText: "",
    doc:
      "Bearer token for every endpoint but the controls (/api/control/*) when HTTP_HOST is not loopback: give it to Grafana and Prometheus. Must differ from API_TOKEN; at least 16 characters.",
    secret: true,
  },
  {
    name: "ALERT_WEBHOOK_URL",
    schema: optionalUrl(),
    defaultText: "",
    doc:
      "Receives a JSON POST for each halt, resume, alarm, live fill and a daily summary (KST); unset: no alerts.",
    secret: true,
  },
  {
    name: "DATA_DIR",
    schema: text("./data"),
    defaultText: "./data",
    doc:
      "Embedded database (when DATABASE_URL is unset) and, always, control/ for deno task halt/resume/flatten.",
  },
  {
    name: "RECORD_TRADES",
    schema: bool(false),
    defaultText: "false",
    doc:
      "Feed: also write every trade received as gzip NDJSON per market and UTC day under DATA_DIR/trades/ (replayed by deno task backtest --source files).",
  },
  {
    name: "DATABASE_URL",
    schema: databaseUrl,
    defaultText: "",
    doc: "PostgreSQL URL; unset: the embedded PGlite database under DATA_DIR.",
    secret: true,
  },
  {
    name: "LOG_LEVEL",
    schema: oneOf(["debug", "info", "warn", "error"], "info"),
    defaultText: "info",
    doc: "Lowest level written: debug, info, warn or error.",
  },
  {
    name: "LOG_FORMAT",
    schema: oneOf(["auto", "json", "pretty"], "auto"),
    defaultText: "auto",
    doc: "json (one object per line), pretty (for terminals) or auto (pretty on a terminal).",
  },
] as const satisfies readonly Setting[];

type SettingName = (typeof SETTINGS)[number]["name"];

type ConfigShape = {
  [S in (typeof SETTINGS)[number] as S["name"]]: z.output<S["schema"]>;
};

/** The validated configuration. Field names are the variable names. */
export type Config = Readonly<ConfigShape>;

/** Names of the variables whose values are secret. */
export const SECRET_NAMES: readonly string[] = SETTINGS.filter((s) => "secret" in s && s.secret)
  .map((s) => s.name);

/** One bad variable: its name, what is wrong, and what is allowed. */
export interface ConfigProblem {
  name: string;
  problem: string;
}

/** Thrown by {@linkcode loadConfig} with every bad variable at once. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

function formatProblem(p: ConfigProblem): string {
  return `config: ${p.name} ${p.problem}`;
}

function showValue(name: string, raw: string | undefined): string {
  if (raw === undefined) return "";
  if (SECRET_NAMES.includes(name)) return " (value hidden)";
  const shown = raw.length > 60 ? raw.slice(0, 57) + "..." : raw;
  return ` (got ${JSON.stringify(shown)})`;
}

/**
 * Validates `env` (variable name to raw string) into a {@linkcode Config}.
 *
 * @throws {ConfigError} listing every bad variable, one per line, never showing a secret value.
 * @example
 * ```ts
 * const config = parseConfig({ HTTP_PORT: "8080" });
 * config.HTTP_PORT; // 8080
 * ```
 */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const out: Record<string, unknown> = {};
  const problems: ConfigProblem[] = [];
  for (const setting of SETTINGS as readonly Setting[]) {
    const raw = env[setting.name];
    const result = setting.schema.safeParse(raw);
    if (result.success) {
      out[setting.name] = result.data;
    } else {
      const message = result.error.issues.map((i) => i.message).join("; ");
      problems.push({ name: setting.name, problem: message + showValue(setting.name, raw) });
    }
  }
  if (
    problems.length === 0 && typeof out.HTTP_HOST === "string" &&
    !isLoopbackHost(out.HTTP_HOST) && out.API_TOKEN === undefined
  ) {
    // Anyone who can reach the port could read the account and halt trading.
    problems.push({
      name: "API_TOKEN",
      problem: `must be set when HTTP_HOST is not a loopback address (got HTTP_HOST ${
        JSON.stringify(out.HTTP_HOST)
      })`,
    });
  }
  if (problems.length === 0) problems.push(...crossProblems(out as Config));
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(out) as Config;
}

/** Rules between settings, checked once every setting is valid on its own. */
function crossProblems(c: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (c.API_READ_TOKEN !== undefined && c.API_READ_TOKEN === c.API_TOKEN) {
    // The read token is handed to Grafana and Prometheus; equal to API_TOKEN it would control too.
    problems.push({
      name: "API_READ_TOKEN",
      problem: "must differ from API_TOKEN: the read token must not open the controls " +
        "(value hidden)",
    });
  }
  if (c.UPBIT_ACCESS_KEY || c.UPBIT_SECRET_KEY) {
    // Each request carries the access key in a signed token: in clear text, anyone on the path
    // could read the key and replay a token before Upbit sees it. Plain http only to this machine
    // (the simulator).
    for (const name of ["UPBIT_REST_URL", "UPBIT_WS_URL"] as const) {
      const url = new URL(c[name]);
      if ((url.protocol === "http:" || url.protocol === "ws:") && !isLoopbackHost(url.hostname)) {
        problems.push({
          name,
          problem: `must use ${
            url.protocol === "http:" ? "https://" : "wss://"
          } while Upbit keys are set: ${url.protocol}// sends the signed requests unencrypted (it is allowed only to a loopback host, such as the simulator; got ${url.protocol}//${url.host})`,
        });
      }
    }
  }
  if (c.ORDER_KRW_AMOUNT > c.RISK_MAX_ORDER_KRW) {
    problems.push({
      name: "ORDER_KRW_AMOUNT",
      problem:
        `must not exceed RISK_MAX_ORDER_KRW (ORDER_KRW_AMOUNT=${c.ORDER_KRW_AMOUNT}, RISK_MAX_ORDER_KRW=${c.RISK_MAX_ORDER_KRW}): every entry would be refused`,
    });
  }
  if (c.RISK_MAX_EXPOSURE_KRW < c.ORDER_KRW_AMOUNT) {
    problems.push({
      name: "RISK_MAX_EXPOSURE_KRW",
      problem:
        `must be at least ORDER_KRW_AMOUNT (RISK_MAX_EXPOSURE_KRW=${c.RISK_MAX_EXPOSURE_KRW}, ORDER_KRW_AMOUNT=${c.ORDER_KRW_AMOUNT}): every entry would be refused`,
    });
  }
  return problems;
}

/** Options of {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /** Path of the optional `.env` file. @default {".env"} */
  envFile?: string;
  /** The environment; defaults to `Deno.env.toObject()`. */
  env?: Record<string, string>;
}

/**
 * Reads `.env` (if present) and the environment (which wins), then validates.
 *
 * @throws {ConfigError} on bad values; `Error` when `.env` exists but cannot be parsed.
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const path = options.envFile ?? ".env";
  let fromFile: Record<string, string> = {};
  try {
    fromFile = parseEnvFile(Deno.readTextFileSync(path));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const env = options.env ?? Deno.env.toObject();
  const merged: Record<string, string> = {};
  for (const s of SETTINGS) {
    const v = env[s.name] ?? fromFile[s.name];
    if (v !== undefined) merged[s.name] = v;
  }
  return parseConfig(merged);
}

/** Whether `host` (e.g. `HTTP_HOST`) is a loopback address, reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Whether both Upbit keys are set. */
export function hasUpbitKeys(config: Config): boolean {
  return Boolean(config.UPBIT_ACCESS_KEY && config.UPBIT_SECRET_KEY);
}

/** The private WebSocket URL derived from `UPBIT_WS_URL` (§7.1: the public URL + `/private`). */
export function privateWsUrl(config: Config): string {
  return config.UPBIT_WS_URL + "/private";
}

/** `DATABASE_URL` with the password replaced by `***`, for logs. */
export function describeDatabaseUrl(databaseUrl: string): string {
  try {
    const u = new URL(databaseUrl);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable DATABASE_URL)";
  }
}

/** Every secret value in `config`, for {@linkcode registerSecret}-style masking. */
export function secretValues(config: Config): string[] {
  const values: string[] = [];
  for (const name of SECRET_NAMES) {
    const v = config[name as SettingName];
    if (typeof v === "string" && v !== "") values.push(v);
  }
  if (config.DATABASE_URL) {
    try {
      // Both forms: the URL's own (percent-encoded as the operator wrote it, which
      // encodeURIComponent of the decoded form need not reproduce) and the decoded one.
      const raw = new URL(config.DATABASE_URL).password;
      if (raw) {
        values.push(raw);
        values.push(decodeURIComponent(raw));
      }
    } catch { /* validated already (a password that does not decode is refused) */ }
  }
  return values;
}
