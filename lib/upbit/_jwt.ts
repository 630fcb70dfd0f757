/**
 * @module Request signing for Upbit (§2): query strings built once for both the wire and the
 * `query_hash`, and HS512 JWTs signed with `node:crypto`'s HMAC.
 *
 * Private to `lib/upbit/`: other code never sees a token.
 */
import { Buffer } from "node:buffer";
import { createHash, createHmac } from "node:crypto";

/** A query parameter value; arrays are only allowed for keys ending in `[]` (§2.2). */
export type QueryValue = string | number | boolean | readonly string[] | undefined | null;

/** Query parameters in the order they are sent (insertion order of the object). */
export type QueryParams = Readonly<Record<string, QueryValue>>;

/** One query string, in the two forms §2.2 needs. */
export interface BuiltQuery {
  /** Percent-encoded, for the URL (without the leading `?`; `""` when there are no params). */
  readonly wire: string;
  /** The same pairs unencoded, in the same order: what `query_hash` is computed over. */
  readonly hashed: string;
}

const KEY = /^[a-z_]+(\[\])?$/;

/**
 * Builds the wire and hashed forms of a query from ordered params (§2.2). `undefined`/`null`
 * values are skipped; `key[]` arrays repeat the key; comma lists are passed as one string.
 *
 * @throws {TypeError} for a key that is not `snake_case` (optionally with `[]`), or an array
 *   under a key without `[]`.
 * @example
 * ```ts
 * buildQuery({ market: "KRW-BTC", "states[]": ["wait", "watch"] }).hashed;
 * // "market=KRW-BTC&states[]=wait&states[]=watch"
 * ```
 */
export function buildQuery(params: QueryParams): BuiltQuery {
  const wire: string[] = [];
  const hashed: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    if (!KEY.test(key)) {
      throw new TypeError(`Cannot build query as key ${JSON.stringify(key)} is invalid`);
    }
    const isArrayKey = key.endsWith("[]");
    if (Array.isArray(value) !== isArrayKey) {
      throw new TypeError(
        `Cannot build query as '${key}' must ${isArrayKey ? "" : "not "}be an array`,
      );
    }
    const values: readonly string[] = Array.isArray(value) ? value : [String(value)];
    for (const v of values) {
      // Brackets stay raw on the wire like the official curl samples; the server decodes anyway.
      wire.push(`${key}=${encodeURIComponent(v)}`);
      hashed.push(`${key}=${v}`);
    }
  }
  return { wire: wire.join("&"), hashed: hashed.join("&") };
}

/**
 * The hashed string of a JSON body (§2.2 POST): `key=value&…` in the body's key order, null keys
 * skipped. Values must already be strings (Upbit wants decimal strings in bodies).
 */
export function bodyHashInput(body: Readonly<Record<string, unknown>>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(body)) {
    if (value === undefined || value === null) continue;
    parts.push(`${key}=${String(value)}`);
  }
  return parts.join("&");
}

/** Lowercase hex SHA-512 of `text` (the `query_hash` claim). */
export function sha512Hex(text: string): Promise<string> {
  return Promise.resolve(sha512HexSync(text));
}

// Synchronous on purpose: WebCrypto's digest and sign go through a thread pool and a promise per
// call, which was a third of the REST client's busy time in a CPU profile (docs/benchmarks.md).
function sha512HexSync(text: string): string {
  return createHash("sha512").update(text, "utf8").digest("hex");
}

/** Inputs of {@linkcode signToken}. */
export interface SignTokenInput {
  accessKey: string;
  secretKey: string;
  /** The unencoded query or body string; omitted or `""` = no `query_hash` claim (§2.1). */
  hashInput?: string;
  /** Fixed nonce for test vectors; default a fresh `crypto.randomUUID()`. */
  nonce?: string;
}

/** base64url of the constant JOSE header `{"alg":"HS512","typ":"JWT"}`, computed once. */
const HEADER_B64 = base64url(JSON.stringify({ alg: "HS512", typ: "JWT" }));

function base64url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}

/**
 * Signs an Upbit JWT (HS512, claims `access_key`, `nonce`, then `query_hash` + `query_hash_alg`
 * when there is a query or body). The secret is used as raw UTF-8 bytes, never base64-decoded.
 * The token is byte-for-byte what a JOSE library produces for the same header and claims (the
 * §2.3 vectors in tests/upbit_signing_test.ts).
 */
export function signToken(input: SignTokenInput): Promise<string> {
  try {
    return Promise.resolve(signTokenSync(input));
  } catch (err) {
    return Promise.reject(err);
  }
}

function signTokenSync(input: SignTokenInput): string {
  const payload: Record<string, string> = {
    access_key: input.accessKey,
    nonce: input.nonce ?? crypto.randomUUID(),
  };
  if (input.hashInput) {
    payload.query_hash = sha512HexSync(input.hashInput);
    payload.query_hash_alg = "SHA512";
  }
  const signingInput = HEADER_B64 + "." + base64url(JSON.stringify(payload));
  const signature = createHmac("sha512", Buffer.from(input.secretKey, "utf8"))
    .update(signingInput, "ascii")
    .digest("base64url");
  return signingInput + "." + signature;
}
