import assert from "node:assert/strict";
import { hashedBodyString, sha512Hex } from "../sim/_auth.ts";
import {
  ACCESS_KEY,
  Client,
  limitBid,
  makeExchange,
  sha512,
  signJwt,
} from "./_sim_exchange_fixture.ts";

const NONCE = "00000000-0000-4000-8000-000000000000";
const VECTOR_OPEN_JWT =
  "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJhY2Nlc3Nfa2V5IjoidGVzdC1hY2Nlc3Mta2V5Iiwibm9uY2UiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDAiLCJxdWVyeV9oYXNoIjoiZTNjZmM2NDkxMzljNTk1ZTFjMjZhOGFhMmIzYzg1MDRmNGIxNTAxMWZjMmI4MTkwODE0NTFlNWU4NDUxNzJiZDVkYmJiNTExMGVjNWQ3YTNkMWQzMmZmNzFmNDZhNzgzMjNhMDQwZThiZWRmODY3MjAyMWZkMjIwNjE5MGEzYTgiLCJxdWVyeV9oYXNoX2FsZyI6IlNIQTUxMiJ9.jr-0If6-c3EI6n57lGvN3ZWL9fcKGVlPxTCHD7iD_gqaufiCS8dZSp-_4b2L-1gVje1BhBod895S26gvANijbA";
const VECTOR_ACCOUNTS_JWT =
  "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJhY2Nlc3Nfa2V5IjoidGVzdC1hY2Nlc3Mta2V5Iiwibm9uY2UiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDAifQ.IRJz1h69PFYpG6JidEP0Y7SNH2i1SnvFduGtOARTFPBx0pCfnB-MV5ZWqAKjTvoF7jTUs6VoVvORZD91huR9gA";

function get(path: string, token?: string): Request {
  return new Request(`http://sim.test${path}`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
}

async function errorName(res: Response): Promise<[number, string]> {
  const body = await res.json() as { error: { name: string } };
  return [res.status, body.error.name];
}

Deno.test("auth accepts the §2.3 vector 1 (GET /v1/orders/open with states[])", async () => {
  const { exchange } = makeExchange();
  assert.equal(
    await sha512Hex("market=KRW-BTC&states[]=wait&states[]=watch&limit=10"),
    "e3cfc649139c595e1c26a8aa2b3c8504f4b15011fc2b819081451e5e845172bd5dbbb5110ec5d7a3d1d32ff71f46a78323a040e8bedf8672021fd2206190a3a8",
  );
  const res = await exchange.handle(
    get("/v1/orders/open?market=KRW-BTC&states[]=wait&states[]=watch&limit=10", VECTOR_OPEN_JWT),
  );
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), []);
  exchange.close();
});

Deno.test("auth hashes the decoded query: %5B%5D-encoded brackets verify with the same token", async () => {
  const { exchange } = makeExchange();
  const res = await exchange.handle(
    get(
      "/v1/orders/open?market=KRW-BTC&states%5B%5D=wait&states%5B%5D=watch&limit=10",
      VECTOR_OPEN_JWT,
    ),
  );
  assert.equal(res.status, 200);
  await res.body?.cancel();
  exchange.close();
});

Deno.test("auth accepts the §2.3 vector 2 body hash (POST /v1/orders)", async () => {
  const body = {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.001",
    price: "50000000",
    ord_type: "limit",
  };
  const hashed = hashedBodyString(body);
  assert.equal(hashed, "market=KRW-BTC&side=bid&volume=0.001&price=50000000&ord_type=limit");
  const hash = await sha512Hex(hashed!);
  assert.equal(
    hash,
    "7a1eb1d7da6191e65ee8ae0fcb65c83f16b88bf05a9d252cd075a6c0abfcf3045e3c377378a034a11da9abf9cb00ad1435525991ddf110614b81814773499233",
  );
  const { exchange } = makeExchange();
  const token = await signJwt({
    access_key: ACCESS_KEY,
    nonce: NONCE,
    query_hash: hash,
    query_hash_alg: "SHA512",
  });
  const res = await exchange.handle(
    new Request("http://sim.test/v1/orders", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    }),
  );
  assert.equal(res.status, 201);
  const order = await res.json() as Record<string, unknown>;
  assert.equal(order.state, "wait");
  assert.equal(order.price, "50000000");
  exchange.close();
});

Deno.test("auth accepts the §2.3 vector 3 (GET /v1/accounts) and then rejects its nonce reuse", async () => {
  const { exchange } = makeExchange();
  const first = await exchange.handle(get("/v1/accounts", VECTOR_ACCOUNTS_JWT));
  assert.equal(first.status, 200);
  const accounts = await first.json() as Record<string, unknown>[];
  assert.deepEqual(accounts, [{
    currency: "KRW",
    balance: "10000000",
    locked: "0",
    avg_buy_price: "0",
    avg_buy_price_modified: false,
    unit_currency: "KRW",
  }]);
  const again = await exchange.handle(get("/v1/accounts", VECTOR_ACCOUNTS_JWT));
  assert.deepEqual(await errorName(again), [401, "nonce_used"]);
  exchange.close();
});

Deno.test("auth accepts HS256 tokens", async () => {
  const { exchange } = makeExchange();
  const token = await signJwt({ access_key: ACCESS_KEY, nonce: crypto.randomUUID() }, {
    alg: "HS256",
  });
  const res = await exchange.handle(get("/v1/accounts", token));
  assert.equal(res.status, 200);
  await res.body?.cancel();
  exchange.close();
});

Deno.test("auth answers each failure with its §5.2 name and 401", async () => {
  const { exchange } = makeExchange();
  const nonce = () => crypto.randomUUID();
  assert.deepEqual(await errorName(await exchange.handle(get("/v1/accounts"))), [
    401,
    "no_authorization_token",
  ]);
  const unknownKey = await signJwt({ access_key: "nobody", nonce: nonce() });
  assert.deepEqual(await errorName(await exchange.handle(get("/v1/accounts", unknownKey))), [
    401,
    "invalid_access_key",
  ]);
  const badSignature = await signJwt({ access_key: ACCESS_KEY, nonce: nonce() }, {
    secret: "wrong-secret",
  });
  assert.deepEqual(await errorName(await exchange.handle(get("/v1/accounts", badSignature))), [
    401,
    "jwt_verification",
  ]);
  assert.deepEqual(await errorName(await exchange.handle(get("/v1/accounts", "not.a.jwt"))), [
    401,
    "jwt_verification",
  ]);
  const noHash = await signJwt({ access_key: ACCESS_KEY, nonce: nonce() });
  assert.deepEqual(
    await errorName(await exchange.handle(get("/v1/orders/chance?market=KRW-BTC", noHash))),
    [401, "invalid_query_payload"],
  );
  const wrongHash = await signJwt({
    access_key: ACCESS_KEY,
    nonce: nonce(),
    query_hash: await sha512("market=KRW-ETH"),
    query_hash_alg: "SHA512",
  });
  assert.deepEqual(
    await errorName(await exchange.handle(get("/v1/orders/chance?market=KRW-BTC", wrongHash))),
    [401, "invalid_query_payload"],
  );
  exchange.close();
});

Deno.test("auth refuses altered signatures: a flipped byte, a cut one, another alg's, bad base64url", async () => {
  const { exchange } = makeExchange();
  const status = async (token: string) =>
    await errorName(await exchange.handle(get("/v1/accounts", token)));
  const fresh = () => signJwt({ access_key: ACCESS_KEY, nonce: crypto.randomUUID() });
  const [head, body, signature] = (await fresh()).split(".") as [string, string, string];
  const flipped = signature.slice(0, 10) + (signature[10] === "A" ? "B" : "A") +
    signature.slice(11);
  assert.deepEqual(await status(`${head}.${body}.${flipped}`), [401, "jwt_verification"]);
  assert.deepEqual(await status(`${head}.${body}.${signature.slice(0, -4)}`), [
    401,
    "jwt_verification",
  ]);
  assert.deepEqual(await status(`${head}.${body}.${signature}A`), [401, "jwt_verification"]);
  assert.deepEqual(await status(`${head}.${body}.${signature.slice(0, 20)}+/`), [
    401,
    "jwt_verification",
  ]);
  // An HS256 signature under an HS512 header (the header is part of what is signed).
  const hs256 = await signJwt({ access_key: ACCESS_KEY, nonce: crypto.randomUUID() }, {
    alg: "HS256",
  });
  const [, body256, signature256] = hs256.split(".") as [string, string, string];
  assert.deepEqual(await status(`${head}.${body256}.${signature256}`), [401, "jwt_verification"]);
  // None of the refused tokens burnt a nonce: the untouched token still works.
  const ok = await exchange.handle(get("/v1/accounts", `${head}.${body}.${signature}`));
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  exchange.close();
});

Deno.test("auth hashes a %2B-encoded plus as a literal +", async () => {
  const { exchange } = makeExchange();
  const client = new Client(exchange);
  const [status] = await client.getJson("/v1/orders/closed", [
    ["start_time", "2025-01-01T00:00:00+09:00"],
    ["end_time", "2025-01-03T00:00:00+09:00"],
  ]);
  assert.equal(status, 200);
  exchange.close();
});

Deno.test("auth refuses a query_hash without query_hash_alg (§2.1: no default is assumed)", async () => {
  const { exchange } = makeExchange();
  const token = await signJwt({
    access_key: ACCESS_KEY,
    nonce: crypto.randomUUID(),
    query_hash: await sha512("market=KRW-BTC"),
  });
  assert.deepEqual(
    await errorName(await exchange.handle(get("/v1/orders/chance?market=KRW-BTC", token))),
    [401, "invalid_query_payload"],
  );
  const body = { market: "KRW-BTC", side: "bid", price: "10000", ord_type: "price" };
  const post = await signJwt({
    access_key: ACCESS_KEY,
    nonce: crypto.randomUUID(),
    query_hash: await sha512(hashedBodyString(body)!),
  });
  const res = await exchange.handle(
    new Request("http://sim.test/v1/orders", {
      method: "POST",
      headers: { authorization: `Bearer ${post}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    }),
  );
  assert.deepEqual(await errorName(res), [401, "invalid_query_payload"]);
  assert.deepEqual(exchange.orders(), []);
  exchange.close();
});

Deno.test("auth decodes a raw + in the query as a space before hashing (§2.2: send it as %2B)", async () => {
  const { exchange } = makeExchange();
  const query = "start_time=2025-01-01T00:00:00+09:00";
  const signed = async (hashed: string) =>
    await signJwt({
      access_key: ACCESS_KEY,
      nonce: crypto.randomUUID(),
      query_hash: await sha512(hashed),
      query_hash_alg: "SHA512",
    });
  // Hashed as `+` but sent raw: the server hashes a space, so the check fails.
  assert.deepEqual(
    await errorName(await exchange.handle(get(`/v1/orders/closed?${query}`, await signed(query)))),
    [401, "invalid_query_payload"],
  );
  // Hashed as the server decodes it: authenticated, but the time with a space is not one.
  const spaced = query.replace("+", " ");
  assert.deepEqual(
    await errorName(await exchange.handle(get(`/v1/orders/closed?${query}`, await signed(spaced)))),
    [400, "invalid_parameter"],
  );
  exchange.close();
});

Deno.test("auth refuses a key past its expiry with 401 expired_access_key (§2.4 keys valid 1 year)", async () => {
  const { exchange } = makeExchange({ apiKeyExpireAtMs: Date.now() + 1_000 });
  const client = new Client(exchange);
  const [before] = await client.getJson("/v1/accounts");
  assert.equal(before, 200, "valid until its expiry");
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  assert.deepEqual(await errorName(await client.query("GET", "/v1/accounts")), [
    401,
    "expired_access_key",
  ]);
  assert.deepEqual(await errorName(await client.post("/v1/orders", limitBid("150000000", "1"))), [
    401,
    "expired_access_key",
  ]);
  assert.deepEqual(exchange.orders(), []);
  exchange.close();
});
