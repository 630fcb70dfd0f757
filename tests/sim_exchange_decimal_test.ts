import assert from "node:assert/strict";
import {
  decimalPlaces,
  divTrunc,
  formatDec,
  mul,
  parseDec,
  toNumber,
  truncDec,
} from "../sim/_decimal.ts";
import { mulberry32, uuidGenerator } from "../sim/_ids.ts";

const d = (s: string | number) => parseDec(s)!;

Deno.test("parseDec reads decimal strings and numbers exactly, including exponents", () => {
  assert.equal(formatDec(d("0.001")), "0.001");
  assert.equal(formatDec(d("1000000.0")), "1000000");
  assert.equal(formatDec(d(1e-7)), "0.0000001");
  assert.equal(formatDec(d("1.5E3")), "1500");
  assert.equal(formatDec(d("-2.50")), "-2.5");
  assert.equal(formatDec(d(0.1)), "0.1");
  assert.equal(formatDec(d(".5")), "0.5");
  for (const bad of ["", "abc", "1.2.3", "1e", "--1", "0x10", Number.NaN, Infinity]) {
    assert.equal(parseDec(bad), undefined, String(bad));
  }
});

Deno.test("mul / divTrunc / truncDec are exact where floats are not", () => {
  assert.equal(formatDec(mul(d("0.1"), d("0.2"))), "0.02");
  assert.equal(formatDec(mul(d("5999.79184"), d("0.0005"))), "2.99989592");
  assert.equal(formatDec(mul(d("7394.19175"), d("0.0005"))), "3.697095875");
  assert.equal(formatDec(divTrunc(d("6000"), d("160594000"), 8)), "0.00003736");
  assert.equal(formatDec(truncDec(d("0.123456789"), 8)), "0.12345678");
  assert.equal(decimalPlaces(d("0.00000001")), 8);
  assert.equal(decimalPlaces(d("12")), 0);
  assert.equal(toNumber(d("15584.9886")), 15584.9886);
  assert.throws(() => divTrunc(d("1"), 0n, 8), RangeError);
});

Deno.test("uuidGenerator draws UUID-v4-shaped ids reproducibly from a seed", () => {
  const a = uuidGenerator(mulberry32(42));
  const b = uuidGenerator(mulberry32(42));
  const c = uuidGenerator(mulberry32(43));
  const first = a();
  assert.equal(first, b());
  assert.notEqual(first, c());
  assert.match(first, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const seen = new Set(Array.from({ length: 1000 }, () => a()));
  assert.equal(seen.size, 1000);
});
