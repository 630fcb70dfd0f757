/**
 * @module The five pipeline actors: the schema of each actor's configuration slice (validated by
 * the actor when it starts) and {@linkcode pipelineActorSpecs}, which cuts those slices out of the
 * configuration with least-privilege permissions. Only the executor, the order-poller and the
 * account actor receive the Upbit keys; no actor reads the environment (except postgres.js's
 * `PG*` variables).
 */
import { z } from "zod";
import { actorPermissions, hostPort } from "../actors/permissions.ts";
import type { ActorSpec } from "../actors/supervisor.ts";
import type { Config } from "../config.ts";
import { privateWsUrl, REST_TIMEOUT_MAX_MS, REST_TIMEOUT_MIN_MS } from "../config.ts";
import type { DbConnection } from "../db/connect.ts";
import { TradeMode } from "../domain.ts";
import { decideTradeMode } from "../execution/guard.ts";
import type { Logger } from "../log.ts";
import { announceBan, shareBans } from "./upbit_bans.ts";
import { UpbitRest } from "../upbit/rest.ts";
import type { RestCallStats } from "../upbit/rest_stats.ts";
import { overridesFromConfig, resolveParams } from "../strategy/policy.ts";
import { SkillGateParamsSchema } from "../strategy/skill_gate.ts";

/** zod schema of {@linkcode DbConnection}. */
export const DbConnectionSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("url"),
    url: z.string(),
    lease: z.object({ epoch: z.number(), holderPid: z.number().int() }).optional(),
  }),
  z.object({
    kind: z.literal("embedded"),
    host: z.string(),
    port: z.number().int(),
    database: z.string(),
    username: z.string(),
    password: z.string(),
  }),
]);

const Markets = z.array(z.string()).min(1);

/** `UPBIT_REST_TIMEOUT_MS`: the per-attempt timeout of the actor's Upbit client, in ms. */
const RestTimeoutMs = z.number().int().min(REST_TIMEOUT_MIN_MS).max(REST_TIMEOUT_MAX_MS);

/** The feed's slice. */
export const FeedConfig = z.object({
  db: DbConnectionSchema,
  markets: Markets,
  wsUrl: z.string(),
  restUrl: z.string(),
  restTimeoutMs: RestTimeoutMs,
  /** `DATA_DIR/trades` (absolute) when `RECORD_TRADES` is on, else null. */
  recordTradesDir: z.string().nullable(),
  /** Seconds between market-status passes (warnings, cautions, delisting). */
  marketStatusPollSec: z.number().positive(),
});

/** The evaluator's slice. */
export const EvaluatorConfig = z.object({
  db: DbConnectionSchema,
  markets: Markets,
  profile: z.string(),
  params: z.object({
    tpPct: z.number(),
    slPct: z.number(),
    horizonSec: z.number(),
    entryEvMin: z.number(),
    exitEvMin: z.number(),
    cooldownSec: z.number(),
    skillGate: SkillGateParamsSchema.nullable(),
  }),
  krwAmount: z.number(),
});

/** The keys, only in the slices of the actors that call the private API. */
const Keys = {
  accessKey: z.string().optional(),
  secretKey: z.string().optional(),
};

/** The executor's slice. */
export const ExecutorConfig = z.object({
  db: DbConnectionSchema,
  restUrl: z.string(),
  restTimeoutMs: RestTimeoutMs,
  ...Keys,
  guard: z.object({
    UPBIT_TRADE_MODE: TradeMode,
    LIVE_TRADING_ENABLED: z.boolean(),
    LIVE_GUARD_PHRASE: z.string(),
    PAPER_POLICY_PROFILE: z.enum(["test", "default"]),
  }),
  settings: z.object({
    orderKrwAmount: z.number(),
    maxOrdersPerMin: z.number(),
    maxRetries: z.number(),
    shadowEnabled: z.boolean(),
    maxSignalAgeSec: z.number(),
    landingWaitSec: z.number(),
    reconcileRetrySec: z.number(),
    reconcileIntervalMin: z.number(),
    markets: Markets,
  }),
  /** The risk gate's limits (`risk_gate.ts`). */
  risk: z.object({
    maxOrderKrw: z.number(),
    maxOpenPositions: z.number(),
    maxExposureKrw: z.number(),
    maxDailyLossKrw: z.number(),
    maxSignalAgeSec: z.number(),
  }),
});

/** The order-poller's slice. */
export const OrderPollerConfig = z.object({
  db: DbConnectionSchema,
  restUrl: z.string(),
  restTimeoutMs: RestTimeoutMs,
  ...Keys,
  pollIntervalSec: z.number(),
  maxPolls: z.number(),
});

/** The account actor's slice. */
export const AccountConfig = z.object({
  db: DbConnectionSchema,
  restUrl: z.string(),
  restTimeoutMs: RestTimeoutMs,
  privateWsUrl: z.string(),
  ...Keys,
  markets: Markets,
  pollIntervalSec: z.number(),
  /** The executor's effective mode (the guard's decision): the gate is watched only in live. */
  mode: z.enum(["shadow", "test", "live"]),
  /** How long a lost private stream or REST connection may last before the gate closes. */
  outageLimitSec: z.number().positive(),
});

/**
 * Each keyed actor's share of Upbit's `default` group (30/s per pocket, §3.1). Every actor has its
 * own client and rate limiter, so the shares add up to the documented limit: together they can
 * never draw a 429 (and so never a 418 ban) on their own.
 */
export const DEFAULT_GROUP_SHARES = { executor: 10, order_poller: 15, account: 5 } as const;

/**
 * The Upbit client of a keyed actor, with its share of the `default` group. A 418 it draws is
 * announced to every actor, and bans other actors draw are applied to it (`lib/pipeline/upbit_bans.ts`).
 * With `stats`, every call it makes is counted there (the actor publishes them as metrics).
 * `slice.restTimeoutMs` is its per-attempt timeout (`UPBIT_REST_TIMEOUT_MS`; the client's default
 * when absent).
 */
export function keyedUpbitRest(
  actor: keyof typeof DEFAULT_GROUP_SHARES,
  slice: {
    restUrl: string;
    restTimeoutMs?: number | undefined;
    accessKey?: string | undefined;
    secretKey?: string | undefined;
  },
  logger: Logger,
  stats?: RestCallStats,
): UpbitRest {
  const rest = new UpbitRest({
    baseUrl: slice.restUrl,
    timeoutMs: slice.restTimeoutMs,
    accessKey: slice.accessKey,
    secretKey: slice.secretKey,
    logger,
    fetch: stats?.fetch,
    rateLimiter: {
      budgets: { default: { limit: DEFAULT_GROUP_SHARES[actor], windowMs: 1000 } },
      onBan: announceBan,
    },
  });
  shareBans(rest.rateLimiter);
  return rest;
}

/**
 * The quotation-only Upbit client of an actor (no keys), sharing 418 bans with every actor; with
 * `stats`, every call it makes is counted there. `timeoutMs` is its per-attempt timeout
 * (`UPBIT_REST_TIMEOUT_MS`; the client's default when absent).
 */
export function quotationUpbitRest(
  restUrl: string,
  logger: Logger,
  stats?: RestCallStats,
  timeoutMs?: number,
): UpbitRest {
  const rest = new UpbitRest({
    baseUrl: restUrl,
    timeoutMs,
    logger,
    fetch: stats?.fetch,
    rateLimiter: { onBan: announceBan },
  });
  shareBans(rest.rateLimiter);
  return rest;
}

function dbHost(db: DbConnection): string {
  return db.kind === "url" ? hostPort(db.url) : `${db.host}:${db.port}`;
}

/** `DATA_DIR/trades` as an absolute path (a worker's permissions need one). */
export function recordedTradesDir(dataDir: string): string {
  const trades = `${dataDir.replace(/\/+$/, "")}/trades`;
  return trades.startsWith("/") ? trades : `${Deno.cwd()}/${trades.replace(/^\.\//, "")}`;
}

/** Options of {@linkcode pipelineActorSpecs}. */
export interface PipelineSpecOptions {
  /** Where the actor modules live. @default {the repository's actors/ folder} */
  actorsDir?: URL;
}

/**
 * The supervisor's children, in start order: feed, evaluator, executor, order_poller, account.
 * The executor and the order-poller are critical: if either fails for good, trading halts.
 */
export function pipelineActorSpecs(
  config: Config,
  db: DbConnection,
  options: PipelineSpecOptions = {},
): ActorSpec[] {
  const dir = options.actorsDir ?? new URL("../../actors/", import.meta.url);
  const dbNet = dbHost(db);
  const rest = hostPort(config.UPBIT_REST_URL);
  const ws = hostPort(config.UPBIT_WS_URL);
  const keys = {
    accessKey: config.UPBIT_ACCESS_KEY,
    secretKey: config.UPBIT_SECRET_KEY,
  };
  const recordTradesDir = config.RECORD_TRADES ? recordedTradesDir(config.DATA_DIR) : null;
  const net = (...hosts: string[]) =>
    actorPermissions({ net: [...new Set([...hosts, dbNet])], env: ["PG*"] });
  return [
    {
      name: "feed",
      module: new URL("feed.ts", dir),
      permissions: recordTradesDir === null ? net(ws, rest) : actorPermissions({
        net: [...new Set([ws, rest, dbNet])],
        env: ["PG*"],
        read: [recordTradesDir],
        write: [recordTradesDir],
      }),
      config: {
        db,
        markets: config.MARKETS,
        wsUrl: config.UPBIT_WS_URL,
        restUrl: config.UPBIT_REST_URL,
        restTimeoutMs: config.UPBIT_REST_TIMEOUT_MS,
        recordTradesDir,
        marketStatusPollSec: config.MARKET_STATUS_POLL_INTERVAL_SEC,
      } satisfies z.input<typeof FeedConfig>,
    },
    {
      name: "evaluator",
      module: new URL("evaluator.ts", dir),
      permissions: net(),
      config: {
        db,
        markets: config.MARKETS,
        profile: config.PAPER_POLICY_PROFILE,
        params: resolveParams(config.PAPER_POLICY_PROFILE, overridesFromConfig(config)),
        krwAmount: config.ORDER_KRW_AMOUNT,
      } satisfies z.input<typeof EvaluatorConfig>,
    },
    {
      name: "executor",
      module: new URL("executor.ts", dir),
      critical: true,
      permissions: net(rest),
      config: {
        db,
        restUrl: config.UPBIT_REST_URL,
        restTimeoutMs: config.UPBIT_REST_TIMEOUT_MS,
        ...keys,
        guard: {
          UPBIT_TRADE_MODE: config.UPBIT_TRADE_MODE,
          LIVE_TRADING_ENABLED: config.LIVE_TRADING_ENABLED,
          LIVE_GUARD_PHRASE: config.LIVE_GUARD_PHRASE,
          PAPER_POLICY_PROFILE: config.PAPER_POLICY_PROFILE,
        },
        settings: {
          orderKrwAmount: config.ORDER_KRW_AMOUNT,
          maxOrdersPerMin: config.MAX_ORDERS_PER_MIN,
          maxRetries: config.EXECUTOR_MAX_RETRIES,
          shadowEnabled: config.SHADOW_ENABLED,
          maxSignalAgeSec: config.EXECUTOR_MAX_SIGNAL_AGE_SEC,
          landingWaitSec: config.EXECUTOR_LANDING_WAIT_SEC,
          reconcileRetrySec: config.RECONCILE_RETRY_SEC,
          reconcileIntervalMin: config.RECONCILE_INTERVAL_MIN,
          markets: config.MARKETS,
        },
        risk: {
          maxOrderKrw: config.RISK_MAX_ORDER_KRW,
          maxOpenPositions: config.RISK_MAX_OPEN_POSITIONS,
          maxExposureKrw: config.RISK_MAX_EXPOSURE_KRW,
          maxDailyLossKrw: config.RISK_MAX_DAILY_LOSS_KRW,
          maxSignalAgeSec: config.EXECUTOR_MAX_SIGNAL_AGE_SEC,
        },
      } satisfies z.input<typeof ExecutorConfig>,
    },
    {
      name: "order_poller",
      module: new URL("order_poller.ts", dir),
      critical: true,
      // No WebSocket: the account actor owns the one private connection and forwards wakes.
      permissions: net(rest),
      config: {
        db,
        restUrl: config.UPBIT_REST_URL,
        restTimeoutMs: config.UPBIT_REST_TIMEOUT_MS,
        ...keys,
        pollIntervalSec: config.LIVE_ORDER_POLL_INTERVAL_SEC,
        maxPolls: config.LIVE_ORDER_MAX_POLLS,
      } satisfies z.input<typeof OrderPollerConfig>,
    },
    {
      name: "account",
      module: new URL("account.ts", dir),
      // Without keys it exits normally and stays down.
      restart: "transient",
      permissions: net(rest, ws),
      config: {
        db,
        restUrl: config.UPBIT_REST_URL,
        restTimeoutMs: config.UPBIT_REST_TIMEOUT_MS,
        privateWsUrl: privateWsUrl(config),
        ...keys,
        markets: config.MARKETS,
        pollIntervalSec: config.ACCOUNT_POLL_INTERVAL_SEC,
        mode: decideTradeMode(config).effective,
        outageLimitSec: config.RECONCILE_OUTAGE_LIMIT_SEC,
      } satisfies z.input<typeof AccountConfig>,
    },
  ];
}
