/** @module Test helper: Upbit-style JWTs (§2) for calls to the simulator's exchange endpoints. */

const enc = new TextEncoder();

function b64url(bytes: Uint8Array | string): string {
  const raw = typeof bytes === "string" ? enc.encode(bytes) : bytes;
  let s = "";
  for (const b of raw) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** `Bearer <JWT>` (HS256) for `access_key`, a fresh nonce and, when given, the hashed query. */
export async function bearer(
  accessKey: string,
  secretKey: string,
  hashed?: string,
): Promise<string> {
  const payload: Record<string, string> = { access_key: accessKey, nonce: crypto.randomUUID() };
  if (hashed) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", enc.encode(hashed)));
    payload.query_hash = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
    payload.query_hash_alg = "SHA512";
  }
  const head = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${
    b64url(JSON.stringify(payload))
  }`;
  const key = await crypto.subtle.importKey(
    "raw",
    enc.encode(secretKey),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(head)));
  return `Bearer ${head}.${b64url(sig)}`;
}

/** POSTs a JSON body to an exchange endpoint, signed as §2.2 says (body hashed as `k=v&…`). */
export async function signedPost(
  base: string,
  path: string,
  keys: { accessKey: string; secretKey: string },
  body: Record<string, string>,
  init: RequestInit = {},
): Promise<Response> {
  const hashed = Object.entries(body).map(([k, v]) => `${k}=${v}`).join("&");
  return await fetch(base + path, {
    ...init,
    method: "POST",
    headers: {
      "content-type": "application/json; charset=utf-8",
      authorization: await bearer(keys.accessKey, keys.secretKey, hashed),
    },
    body: JSON.stringify(body),
  });
}

/** GET / DELETE with the query hashed unencoded, in send order. */
export async function signedQuery(
  base: string,
  method: "GET" | "DELETE",
  path: string,
  keys: { accessKey: string; secretKey: string },
  query = "",
): Promise<Response> {
  return await fetch(base + path + (query ? `?${query}` : ""), {
    method,
    headers: {
      authorization: await bearer(
        keys.accessKey,
        keys.secretKey,
        query ? decodeURIComponent(query) : undefined,
      ),
    },
  });
}
