/**
 * @module Upbit authentication as the simulated exchange checks it (§2): a `Bearer` JWT signed
 * HS256 or HS512 with the raw secret, `access_key` + `nonce` claims, and a `query_hash` (SHA-512 hex)
 * over the URL-decoded query string or the JSON body serialized as `k=v&…` in received key order.
 * A key past its expiry (keys are valid one year, §2.4) is refused.
 */

import { Buffer } from "node:buffer";
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { SimError, SimResult } from "./contract.ts";

/** An authentication refusal: HTTP status plus the §5.2 error name. */
export interface AuthFailure extends SimError {
  status: 401;
  name:
    | "no_authorization_token"
    | "jwt_verification"
    | "invalid_access_key"
    | "expired_access_key"
    | "nonce_used"
    | "invalid_query_payload";
  message: string;
}

/** The claims of a verified token. */
export interface VerifiedToken {
  accessKey: string;
  nonce: string;
}

const HASHES = { HS256: "sha256", HS512: "sha512" } as const;

function fail(
  name: AuthFailure["name"],
  message: string,
): { ok: false; error: AuthFailure } {
  return { ok: false, error: { status: 401, name, message } };
}

function base64UrlDecode(text: string): Buffer | undefined {
  // Strict alphabet and length (as atob would refuse); Buffer itself skips what it cannot read.
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  return Buffer.from(text, "base64url");
}

function decodeJson(part: string): Record<string, unknown> | undefined {
  const bytes = base64UrlDecode(part);
  if (!bytes) return undefined;
  try {
    const value: unknown = JSON.parse(bytes.toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? value as Record<string, unknown>
      : undefined;
  } catch {
    return undefined;
  }
}

/** Lowercase hex SHA-512 of `text` (the `query_hash` of §2.2). */
export function sha512Hex(text: string): Promise<string> {
  return Promise.resolve(sha512HexSync(text));
}

// Synchronous on purpose: WebCrypto's verify and digest go through a thread pool and a promise
// each, which was a quarter of the simulator's busy time under the REST benchmark.
function sha512HexSync(text: string): string {
  return createHash("sha512").update(text, "utf8").digest("hex");
}

/**
 * The string a client hashed for a GET/DELETE: the raw query string as received, URL-decoded
 * (same order, `[]` keys literal). A raw `+` decodes to a space, as in any form-encoded query:
 * §2.2 says a literal `+` must go on the wire as `%2B` (and be hashed as `+`), so a client that
 * sends it raw but hashes `+` fails the check. `null` when there is no query.
 */
export function hashedQueryString(url: URL): string | null {
  const raw = url.search.startsWith("?") ? url.search.slice(1) : url.search;
  if (raw === "") return null;
  const spaced = raw.replaceAll("+", " ");
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

/**
 * The string a client hashed for a JSON POST body: `key=value&…` in received key order, skipping
 * null values (§2.2). `null` when the body has no keys.
 */
export function hashedBodyString(body: Record<string, unknown>): string | null {
  const pairs: string[] = [];
  for (const [key, value] of Object.entries(body)) {
    if (value === null || value === undefined) continue;
    if (Array.isArray(value)) { for (const item of value) pairs.push(`${key}=${String(item)}`); }
    else pairs.push(`${key}=${String(value)}`);
  }
  return pairs.length === 0 ? null : pairs.join("&");
}

/** One API key the {@linkcode Authenticator} knows. */
export interface ApiKey {
  /** The secret key, used as is as the HMAC key. */
  secret: string;
  /** Epoch ms from which the key is refused with `expired_access_key` (§2.4, §5.2). */
  expireAtMs: number;
}

/** Verifies tokens for a fixed set of keys and remembers every nonce it has accepted. */
export class Authenticator {
  /** Access key to the secret's raw UTF-8 bytes (the HMAC key, never base64-decoded). */
  readonly #secrets: Map<string, Buffer>;
  readonly #expireAtMs: Map<string, number>;
  readonly #now: () => number;
  readonly #usedNonces = new Set<string>();

  /** `keys` maps access key to its secret and expiry; `now` is the wall clock in ms. */
  constructor(keys: Map<string, ApiKey>, now: () => number = Date.now) {
    this.#secrets = new Map([...keys].map(([k, v]) => [k, Buffer.from(v.secret, "utf8")]));
    this.#expireAtMs = new Map([...keys].map(([k, v]) => [k, v.expireAtMs]));
    this.#now = now;
  }

  /**
   * Checks an `Authorization` header value. `hashed` is the string the client must have hashed
   * (`null` when the request carries no parameters); pass `undefined` to skip the query check
   * (private WebSocket). The nonce is burnt once the signature is valid.
   */
  verify(
    authorization: string | null,
    hashed: string | null | undefined,
  ): Promise<SimResult<VerifiedToken, AuthFailure>> {
    return Promise.resolve(this.verifySync(authorization, hashed));
  }

  /** {@linkcode verify}, synchronously. */
  verifySync(
    authorization: string | null,
    hashed: string | null | undefined,
  ): SimResult<VerifiedToken, AuthFailure> {
    if (!authorization) return fail("no_authorization_token", "Authorization header is missing.");
    const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
    if (!match) return fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다.");
    const parts = match[1]!.split(".");
    if (parts.length !== 3) return fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다.");
    const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
    const header = decodeJson(headerPart);
    const payload = decodeJson(payloadPart);
    const signature = base64UrlDecode(signaturePart);
    const alg = header?.alg;
    if (!header || !payload || !signature || (alg !== "HS256" && alg !== "HS512")) {
      return fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다.");
    }
    const accessKey = payload.access_key;
    if (typeof accessKey !== "string") {
      return fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다.");
    }
    const secret = this.#secrets.get(accessKey);
    if (secret === undefined) return fail("invalid_access_key", "잘못된 엑세스 키입니다.");
    // Checked before the signature, like an unknown key: the key itself is refused (the nonce is
    // not used up). The message is inferred (§5.2 gives the name only).
    if (this.#now() >= this.#expireAtMs.get(accessKey)!) {
      return fail("expired_access_key", "만료된 엑세스 키입니다.");
    }
    const expected = createHmac(HASHES[alg], secret)
      .update(`${headerPart}.${payloadPart}`, "utf8")
      .digest();
    const valid = expected.length === signature.length && timingSafeEqual(expected, signature);
    if (!valid) return fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다.");
    const nonce = payload.nonce;
    if (typeof nonce !== "string" && typeof nonce !== "number") {
      return fail("jwt_verification", "Jwt 토큰 검증에 실패했습니다.");
    }
    const nonceKey = `${accessKey}:${String(nonce)}`;
    if (this.#usedNonces.has(nonceKey)) return fail("nonce_used", "이미 요청한 nonce값입니다.");
    this.#usedNonces.add(nonceKey);
    if (hashed !== undefined) {
      const claimed = payload.query_hash;
      if (hashed === null && claimed === undefined) {
        return { ok: true, value: { accessKey, nonce: String(nonce) } };
      }
      // §2.1: `query_hash_alg` goes with every `query_hash` ("omit only if you omit query_hash"):
      // no default is assumed. The error name for a missing one is undocumented; the query of the
      // token cannot be verified, hence `invalid_query_payload` (inferred).
      const alg = payload.query_hash_alg;
      if (typeof claimed !== "string" || alg !== "SHA512") {
        return fail("invalid_query_payload", "Jwt의 query를 검증하는데 실패하였습니다.");
      }
      if (claimed.toLowerCase() !== sha512HexSync(hashed ?? "")) {
        return fail("invalid_query_payload", "Jwt의 query를 검증하는데 실패하였습니다.");
      }
    }
    return { ok: true, value: { accessKey, nonce: String(nonce) } };
  }
}
