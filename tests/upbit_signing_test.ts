import assert from "node:assert/strict";
import { bodyHashInput, buildQuery, sha512Hex, signToken } from "../lib/upbit/_jwt.ts";

const KEYS = { accessKey: "test-access-key", secretKey: "test-secret-key" };
const NONCE = "00000000-0000-4000-8000-000000000000";

Deno.test("buildQuery() keeps send order and repeats [] keys per §2.3 vector 1", async () => {
  const q = buildQuery({ market: "KRW-BTC", "states[]": ["wait", "watch"], limit: 10 });
  assert.equal(q.hashed, "market=KRW-BTC&states[]=wait&states[]=watch&limit=10");
  assert.equal(q.wire, "market=KRW-BTC&states[]=wait&states[]=watch&limit=10");
  assert.equal(
    await sha512Hex(q.hashed),
    "e3cfc649139c595e1c26a8aa2b3c8504f4b15011fc2b819081451e5e845172bd5dbbb5110ec5d7a3d1d32ff71f46a78323a040e8bedf8672021fd2206190a3a8",
  );
});

Deno.test("signToken() reproduces the §2.3 JWT of GET /v1/orders/open", async () => {
  const q = buildQuery({ market: "KRW-BTC", "states[]": ["wait", "watch"], limit: 10 });
  const jwt = await signToken({ ...KEYS, hashInput: q.hashed, nonce: NONCE });
  assert.equal(
    jwt,
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJhY2Nlc3Nfa2V5IjoidGVzdC1hY2Nlc3Mta2V5Iiwibm9uY2UiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDAiLCJxdWVyeV9oYXNoIjoiZTNjZmM2NDkxMzljNTk1ZTFjMjZhOGFhMmIzYzg1MDRmNGIxNTAxMWZjMmI4MTkwODE0NTFlNWU4NDUxNzJiZDVkYmJiNTExMGVjNWQ3YTNkMWQzMmZmNzFmNDZhNzgzMjNhMDQwZThiZWRmODY3MjAyMWZkMjIwNjE5MGEzYTgiLCJxdWVyeV9oYXNoX2FsZyI6IlNIQTUxMiJ9.jr-0If6-c3EI6n57lGvN3ZWL9fcKGVlPxTCHD7iD_gqaufiCS8dZSp-_4b2L-1gVje1BhBod895S26gvANijbA",
  );
});

Deno.test("bodyHashInput() hashes a POST body in key order per §2.3 vector 2", async () => {
  const body = {
    market: "KRW-BTC",
    side: "bid",
    volume: "0.001",
    price: "50000000",
    ord_type: "limit",
    identifier: null,
  };
  const hashed = bodyHashInput(body);
  assert.equal(hashed, "market=KRW-BTC&side=bid&volume=0.001&price=50000000&ord_type=limit");
  assert.equal(
    await sha512Hex(hashed),
    "7a1eb1d7da6191e65ee8ae0fcb65c83f16b88bf05a9d252cd075a6c0abfcf3045e3c377378a034a11da9abf9cb00ad1435525991ddf110614b81814773499233",
  );
});

Deno.test("signToken() without params carries only access_key and nonce per §2.3 vector 3", async () => {
  assert.equal(
    await signToken({ ...KEYS, nonce: NONCE }),
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJhY2Nlc3Nfa2V5IjoidGVzdC1hY2Nlc3Mta2V5Iiwibm9uY2UiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDAifQ.IRJz1h69PFYpG6JidEP0Y7SNH2i1SnvFduGtOARTFPBx0pCfnB-MV5ZWqAKjTvoF7jTUs6VoVvORZD91huR9gA",
  );
});

Deno.test("signToken() uses a fresh UUID nonce per call", async () => {
  const claims = async () =>
    JSON.parse(atob((await signToken(KEYS)).split(".")[1] as string)) as { nonce: string };
  const a = await claims();
  const b = await claims();
  assert.match(a.nonce, /^[0-9a-f-]{36}$/);
  assert.notEqual(a.nonce, b.nonce);
});

Deno.test("buildQuery() encodes '+' on the wire but hashes it raw (§2.2 pitfall)", () => {
  const q = buildQuery({ start_time: "2024-03-13T00:00:00+09:00", skipped: undefined });
  assert.equal(q.wire, "start_time=2024-03-13T00%3A00%3A00%2B09%3A00");
  assert.equal(q.hashed, "start_time=2024-03-13T00:00:00+09:00");
});

Deno.test("buildQuery() rejects an array under a key without []", () => {
  assert.throws(
    () => buildQuery({ uuids: ["a"] }),
    { name: "TypeError", message: "Cannot build query as 'uuids' must not be an array" },
  );
});
