/**
 * @module `deno task smoke`: checks the Upbit keys against the configured REST URL.
 *
 * Calls `GET /v1/accounts`, prints the days to expiry of the key in use (`GET /v1/api_keys`), and with `UPBIT_ORDER_TEST_ENABLED=true` also `POST /v1/orders/test`
 * (a 5000 KRW `price` buy of the first of `MARKETS`; nothing is created). Prints each result with
 * its http status, latency and `Remaining-Req`. Never prints a key or a token.
 *
 * Permissions: `--allow-net --allow-env --allow-read` (read only for `.env`).
 * Exit codes: 0 all calls succeeded, 1 missing keys or a failed call, 2 bad configuration.
 */
import { loadConfigOrReport, setUpLogging } from "../lib/cli.ts";
import { createLogger } from "../lib/log.ts";
import { daysToExpiry, expiresSoon, keyInUse } from "../lib/upbit/api_keys.ts";
import {
  UpbitApiError,
  UpbitBanActiveError,
  UpbitResponseError,
  UpbitRest,
  UpbitTransportError,
} from "../lib/upbit/mod.ts";

const log = createLogger("smoke");

function errorFields(err: unknown): Record<string, unknown> {
  if (err instanceof UpbitApiError) {
    return {
      error: err.name,
      http_status: err.httpStatus,
      code: err.code,
      message: err.message,
      remaining_req: err.remainingReq,
      latency_ms: err.meta.latency_ms,
    };
  }
  if (err instanceof UpbitTransportError) {
    return {
      error: err.name,
      kind: err.kind,
      message: err.message,
      latency_ms: err.meta.latency_ms,
    };
  }
  if (err instanceof UpbitResponseError) {
    return { error: err.name, message: err.message, http_status: err.meta.http_status };
  }
  if (err instanceof UpbitBanActiveError) {
    return { error: err.name, message: err.message, retry_after_ms: err.retryAfterMs };
  }
  return { error: err instanceof Error ? err.name : "Error", message: String(err) };
}

/**
 * `GET /v1/api_keys`: prints the days to expiry of the key in use (a warning within
 * `KEY_EXPIRY_WARN_DAYS` (14) days). Informational: a failure here does not fail the smoke.
 */
async function reportKeyExpiry(rest: UpbitRest, accessKey: string): Promise<void> {
  try {
    const { data, meta } = await rest.getApiKeys();
    const key = keyInUse(data, accessKey);
    if (!key) {
      log.warn("GET /v1/api_keys does not list the key in use", { keys: data.length });
      return;
    }
    const days = daysToExpiry(key.expire_at, Date.now());
    const fields = {
      expire_at: key.expire_at,
      days_to_expiry: days,
      http_status: meta.http_status,
      latency_ms: meta.latency_ms,
    };
    if (expiresSoon(days)) {
      log.warn(`the Upbit key expires in ${days} days: issue a new one`, fields);
    } else log.info(`the Upbit key expires in ${days} days`, fields);
  } catch (err) {
    log.warn("GET /v1/api_keys failed", errorFields(err));
  }
}

async function main(): Promise<number> {
  const config = loadConfigOrReport();
  if (!config) return 2;
  setUpLogging(config);
  const missing = [
    ...(config.UPBIT_ACCESS_KEY ? [] : ["UPBIT_ACCESS_KEY"]),
    ...(config.UPBIT_SECRET_KEY ? [] : ["UPBIT_SECRET_KEY"]),
  ];
  if (missing.length > 0) {
    log.error(`missing ${missing.join(" and ")}: set them to check the Upbit API`, { missing });
    return 1;
  }
  const rest = new UpbitRest({
    baseUrl: config.UPBIT_REST_URL,
    accessKey: config.UPBIT_ACCESS_KEY,
    secretKey: config.UPBIT_SECRET_KEY,
    timeoutMs: config.UPBIT_REST_TIMEOUT_MS,
    maxAttempts: 1,
  });
  try {
    try {
      const { data, meta } = await rest.getAccounts();
      log.info("GET /v1/accounts ok", {
        http_status: meta.http_status,
        latency_ms: meta.latency_ms,
        remaining_req: meta.remaining_req,
        balances: data.map((a) => ({ currency: a.currency, balance: a.balance, locked: a.locked })),
      });
    } catch (err) {
      log.error("GET /v1/accounts failed", errorFields(err));
      return 1;
    }
    await reportKeyExpiry(rest, config.UPBIT_ACCESS_KEY as string);
    if (!config.UPBIT_ORDER_TEST_ENABLED) return 0;
    const market = config.MARKETS[0] ?? "KRW-BTC";
    const result = await rest.postOrderTest({
      market,
      side: "bid",
      ord_type: "price",
      price: "5000",
      identifier: `smoke-${crypto.randomUUID()}`,
    });
    switch (result.kind) {
      case "accepted":
        log.info("POST /v1/orders/test ok (test order: nothing was created)", {
          market,
          uuid: result.order.uuid,
          state: result.order.state,
          http_status: result.meta.http_status,
          latency_ms: result.meta.latency_ms,
          remaining_req: result.meta.remaining_req,
        });
        return 0;
      case "rejected":
        log.error("POST /v1/orders/test refused", { market, ...errorFields(result.error) });
        return 1;
      case "unknown":
        log.error("POST /v1/orders/test outcome unknown", {
          market,
          reason: result.reason,
          ...errorFields(result.error),
        });
        return 1;
    }
  } finally {
    rest.close();
  }
}

if (import.meta.main) Deno.exit(await main());
