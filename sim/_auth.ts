/**
 * @module Upbit authentication as the simulated exchange checks it (§2): a `Bearer` JWT signed
 * HS256 or HS512 with the raw secret, `access_key` + `nonce` claims, and a `query_hash` (SHA-512 hex)
 * over the URL-decoded query string or the JSON body serialized as `k=v&…` in received key order.
 */

import type { SimError, SimResult } from "./contract.ts";

/** An authentication refusal: HTTP status plus the §5.2 error name. */
export interface AuthFailure extends SimError {
  status: 401;
  name:
    | "no_authorization_token"
    | "jwt_verification"
    | "invalid_access_key"
    | "nonce_used"
    | "invalid_query_payload";
  message: string;
}

/** The claims of a verified token. */
export interface VerifiedToken {
  accessKey: string;
  nonce: string;
}

const encoder = new TextEncoder();
const HASHES = { HS256: "SHA-256", HS512: "SHA-512" } as const;

function fail(
  name: AuthFailure["name"],
  message: string,
): { ok: false; error: AuthFailure } {
  return { ok: false, error: { status: 401, name, message } };
}

function base64UrlDecode(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(
    Math.ceil(text.length / 4) * 4,
    "=",
  );
  try {
    const binary = atob(b64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  } catch {
    return undefined;
  }
}

function decodeJson(part: string): Record<string, unknown> | undefined {
  const bytes = base64UrlDecode(part);
  if (!bytes) return undefined;
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? value as Record<string, unknown>
      : undefined;
  } catch {
    return undefined;
  }
}

/** Lowercase hex SHA-512 of `text` (the `query_hash` of §2.2). */
export async function sha512Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-512", encoder.encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The string a client hashed for a GET/DELETE: the raw query string as received, URL-decoded
 * (same order, `[]` keys literal). `null` when there is no query.
 */
export function hashedQueryString(url: URL): string | null {
  const raw = url.search.startsWith("?") ? url.search.slice(1) : url.search;
  if (raw === "") return null;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
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

/** Verifies tokens for a fixed set of keys and remembers every nonce it has accepted. */
export class Authenticator {
  readonly #secrets: Map<string, string>;
  readonly #keys = new Map<string, CryptoKey>();
  readonly #usedNonces = new Set<string>();

  /** `secrets` maps access key to secret key. */
  constructor(secrets: Map<string, string>) {
    this.#secrets = secrets;
  }

  async #hmacKey(accessKey: string, secret: string, alg: keyof typeof HASHES): Promise<CryptoKey> {
    const cacheKey = `${alg}:${accessKey}`;
    const cached = this.#keys.get(cacheKey);
    if (cached) return cached;
    const key = await crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: HASHES[alg] },
      false,
      ["verify"],
    );
    this.#keys.set(cacheKey, key);
    return key;
  }

  /**
   * Checks an `Authorization` header value. `hashed` is the string the client must have hashed
   * (`null` when the request carries no parameters); pass `undefined` to skip the query check
   * (private WebSocket). The nonce is burnt once the signature is valid.
   */
  async verify(
    authorization: string | null,
    hashed: string | null | undefined,
  ): Promise<SimResult<VerifiedToken, AuthFailure>> {
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
    const key = await this.#hmacKey(accessKey, secret, alg);
    const valid = await crypto.subtle.verify(
      "HMAC",
      key,
      signature,
      encoder.encode(`${headerPart}.${payloadPart}`),
    );
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
      const alg = payload.query_hash_alg ?? "SHA512";
      if (hashed === null && claimed === undefined) {
        return { ok: true, value: { accessKey, nonce: String(nonce) } };
      }
      if (typeof claimed !== "string" || alg !== "SHA512") {
        return fail("invalid_query_payload", "Jwt의 query를 검증하는데 실패하였습니다.");
      }
      if (claimed.toLowerCase() !== await sha512Hex(hashed ?? "")) {
        return fail("invalid_query_payload", "Jwt의 query를 검증하는데 실패하였습니다.");
      }
    }
    return { ok: true, value: { accessKey, nonce: String(nonce) } };
  }
}
