import assert from "node:assert/strict";
import {
  ConfigError,
  describeDatabaseUrl,
  loadConfig,
  parseConfig,
  privateWsUrl,
  secretValues,
  SETTINGS,
} from "../lib/config.ts";
import { parseEnvFile } from "../lib/env_file.ts";
import { configTable, envExample, tableRows } from "../tools/config_docs.ts";

function problemsOf(env: Record<string, string>): ConfigError {
  try {
    parseConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("parseConfig() gives the safe defaults", () => {
  const c = parseConfig({});
  assert.equal(c.UPBIT_TRADE_MODE, "shadow");
  assert.equal(c.LIVE_TRADING_ENABLED, false);
  assert.equal(c.LIVE_GUARD_PHRASE, "");
  assert.equal(c.PAPER_POLICY_PROFILE, "test");
  assert.equal(c.SHADOW_ENABLED, true);
  assert.equal(c.LIVE_ORDER_POLL_INTERVAL_SEC, 5);
  assert.equal(c.LIVE_ORDER_MAX_POLLS, 24);
  assert.deepEqual(c.MARKETS, ["KRW-BTC"]);
  assert.equal(c.UPBIT_REST_URL, "https://api.upbit.com");
  assert.equal(c.UPBIT_WS_URL, "wss://api.upbit.com/websocket/v1");
  assert.equal(privateWsUrl(c), "wss://api.upbit.com/websocket/v1/private");
  assert.equal(c.HTTP_HOST, "127.0.0.1");
  assert.equal(c.HTTP_PORT, 8501);
  assert.equal(c.DATA_DIR, "./data");
  assert.equal(c.DATABASE_URL, undefined);
  assert.equal(c.UPBIT_ACCESS_KEY, undefined);
  assert.equal(c.EVAL_TP_PCT, undefined);
});

Deno.test("every setting's documented default is the default it parses to", () => {
  const defaults = parseConfig({}) as Record<string, unknown>;
  for (const s of SETTINGS) {
    const unset = defaults[s.name];
    if (s.defaultText === "") {
      assert.ok(unset === undefined || unset === "", `${s.name} is unset by default: ${unset}`);
      continue;
    }
    const written = (parseConfig({ [s.name]: s.defaultText }) as Record<string, unknown>)[s.name];
    assert.notEqual(unset, undefined, `${s.name} documents ${s.defaultText} but has no default`);
    assert.deepEqual(unset, written, `${s.name}: README says ${s.defaultText}`);
  }
});

Deno.test("parseConfig() parses lists, numbers and booleans", () => {
  const c = parseConfig({
    MARKETS: " krw-btc, KRW-ETH ,KRW-BTC",
    HTTP_PORT: "0",
    LIVE_TRADING_ENABLED: "TRUE",
    SHADOW_ENABLED: "0",
    EVAL_TP_PCT: "0.25",
    UPBIT_REST_URL: "http://127.0.0.1:8790/",
  });
  assert.deepEqual(c.MARKETS, ["KRW-BTC", "KRW-ETH"]);
  assert.equal(c.HTTP_PORT, 0);
  assert.equal(c.LIVE_TRADING_ENABLED, true);
  assert.equal(c.SHADOW_ENABLED, false);
  assert.equal(c.EVAL_TP_PCT, 0.25);
  assert.equal(c.UPBIT_REST_URL, "http://127.0.0.1:8790");
});

Deno.test("parseConfig() reports each kind of bad value with name and what is allowed", () => {
  const cases: [string, string, RegExp][] = [
    ["UPBIT_TRADE_MODE", "real", /must be one of shadow, test, live \(got "real"\)/],
    ["LIVE_TRADING_ENABLED", "maybe", /must be true or false/],
    ["HTTP_PORT", "70000", /must be an integer from 0 to 65535/],
    ["HTTP_PORT", "abc", /must be an integer/],
    ["LIVE_ORDER_MAX_POLLS", "2.5", /must be an integer/],
    ["LIVE_ORDER_POLL_INTERVAL_SEC", "-1", /must be a number from 0.1 to 3600/],
    ["EXECUTOR_LANDING_WAIT_SEC", "0", /must be a number from 1 to 3600/],
    ["MARKETS", "BTC", /comma list of market codes/],
    ["UPBIT_REST_URL", "ftp://x", /must be a URL starting with https:\/\/ or http:\/\//],
    ["UPBIT_WS_URL", "https://x", /wss:\/\/ or ws:\/\//],
    ["DATABASE_URL", "mysql://u:p@h/db", /must be a URL like postgres:/],
    ["PAPER_POLICY_PROFILE", "aggressive", /must be one of test, default/],
    ["ORDER_KRW_AMOUNT", "5000", /must be an integer from 6000 to 1000000000/],
    ["ORDER_KRW_AMOUNT", "10000.5", /must be an integer/],
    ["HTTP_HOST", "5\n6", /must be a host name or an IP address/],
    ["HTTP_HOST", "http://0.0.0.0", /must be a host name or an IP address/],
  ];
  for (const [name, value, expected] of cases) {
    const err = problemsOf({ [name]: value });
    assert.equal(err.problems.length, 1, `${name}=${value}`);
    assert.equal(err.problems[0]!.name, name);
    assert.match(err.problems[0]!.problem, expected, `${name}=${value}`);
    assert.match(err.message, new RegExp(`^config: ${name} `));
  }
});

Deno.test("UPBIT_REST_TIMEOUT_MS: 10000 by default, a whole number of ms from 1000 to 120000", () => {
  assert.equal(parseConfig({}).UPBIT_REST_TIMEOUT_MS, 10000);
  assert.equal(parseConfig({ UPBIT_REST_TIMEOUT_MS: "" }).UPBIT_REST_TIMEOUT_MS, 10000);
  assert.equal(parseConfig({ UPBIT_REST_TIMEOUT_MS: " 2500 " }).UPBIT_REST_TIMEOUT_MS, 2500);
  assert.equal(parseConfig({ UPBIT_REST_TIMEOUT_MS: "1000" }).UPBIT_REST_TIMEOUT_MS, 1000);
  assert.equal(parseConfig({ UPBIT_REST_TIMEOUT_MS: "120000" }).UPBIT_REST_TIMEOUT_MS, 120000);
  for (const value of ["999", "0", "-5000", "120001", "1500.5", "10s", "Infinity"]) {
    const err = problemsOf({ UPBIT_REST_TIMEOUT_MS: value });
    assert.equal(err.problems.length, 1, value);
    assert.equal(
      err.message,
      `config: UPBIT_REST_TIMEOUT_MS must be an integer from 1000 to 120000 (got ${
        JSON.stringify(value)
      })`,
    );
  }
});

Deno.test("parseConfig() accepts KRW markets only, naming the others", () => {
  // Fees, ORDER_KRW_AMOUNT and the 5000 minimum are KRW: a BTC or USDT market would be sized
  // and judged in the wrong currency.
  for (const value of ["BTC-ETH", "KRW-BTC, usdt-xrp", "KRW-BTC,BTC-ETH,USDT-XRP,BTC-ETH"]) {
    const err = problemsOf({ MARKETS: value });
    assert.equal(err.problems.length, 1, value);
    assert.equal(err.problems[0]!.name, "MARKETS");
    assert.match(err.problems[0]!.problem, /must list KRW markets only/, value);
  }
  assert.match(problemsOf({ MARKETS: "BTC-ETH" }).message, /BTC-ETH is not quoted in KRW/);
  assert.match(problemsOf({ MARKETS: "KRW-BTC, usdt-xrp" }).message, /USDT-XRP is not quoted/);
  assert.match(
    problemsOf({ MARKETS: "KRW-BTC,BTC-ETH,USDT-XRP,BTC-ETH" }).message,
    /BTC-ETH, USDT-XRP are not quoted in KRW/,
  );
  assert.deepEqual(parseConfig({ MARKETS: "krw-eth,KRW-1INCH" }).MARKETS, ["KRW-ETH", "KRW-1INCH"]);
});

Deno.test("parseConfig() gives conservative risk limits", () => {
  const c = parseConfig({});
  assert.equal(c.RISK_MAX_ORDER_KRW, 50000);
  assert.equal(c.RISK_MAX_OPEN_POSITIONS, 3);
  assert.equal(c.RISK_MAX_EXPOSURE_KRW, 100000);
  assert.equal(c.RISK_MAX_DAILY_LOSS_KRW, 20000);
  assert.ok(c.ORDER_KRW_AMOUNT <= c.RISK_MAX_ORDER_KRW, "the defaults agree with each other");
  assert.match(problemsOf({ RISK_MAX_OPEN_POSITIONS: "0" }).message, /RISK_MAX_OPEN_POSITIONS/);
  assert.match(problemsOf({ RISK_MAX_ORDER_KRW: "4999" }).message, /from 5000 to/);
});

Deno.test("parseConfig() refuses ORDER_KRW_AMOUNT above RISK_MAX_ORDER_KRW, naming both", () => {
  const err = problemsOf({ ORDER_KRW_AMOUNT: "60000", RISK_MAX_ORDER_KRW: "50000" });
  assert.equal(err.problems.length, 1);
  assert.equal(err.problems[0]!.name, "ORDER_KRW_AMOUNT");
  assert.match(
    err.message,
    /^config: ORDER_KRW_AMOUNT must not exceed RISK_MAX_ORDER_KRW \(ORDER_KRW_AMOUNT=60000, RISK_MAX_ORDER_KRW=50000\)/,
  );
  // Equal is allowed.
  assert.equal(parseConfig({ ORDER_KRW_AMOUNT: "50000" }).ORDER_KRW_AMOUNT, 50000);
});

Deno.test("parseConfig() refuses RISK_MAX_EXPOSURE_KRW below ORDER_KRW_AMOUNT, naming both", () => {
  const err = problemsOf({ ORDER_KRW_AMOUNT: "30000", RISK_MAX_EXPOSURE_KRW: "20000" });
  assert.deepEqual(err.problems.map((p) => p.name), ["RISK_MAX_EXPOSURE_KRW"]);
  assert.equal(
    err.message,
    "config: RISK_MAX_EXPOSURE_KRW must be at least ORDER_KRW_AMOUNT (RISK_MAX_EXPOSURE_KRW=20000, ORDER_KRW_AMOUNT=30000): every entry would be refused",
  );
  // Equal is allowed: one entry fits.
  const c = parseConfig({ ORDER_KRW_AMOUNT: "30000", RISK_MAX_EXPOSURE_KRW: "30000" });
  assert.equal(c.RISK_MAX_EXPOSURE_KRW, 30000);
  assert.ok(parseConfig({}).ORDER_KRW_AMOUNT <= parseConfig({}).RISK_MAX_EXPOSURE_KRW);
});

Deno.test("parseConfig() refuses plain http:// or ws:// to Upbit while keys are set, but to loopback", () => {
  const keys = { UPBIT_ACCESS_KEY: "a".repeat(40), UPBIT_SECRET_KEY: "s".repeat(40) };
  const err = problemsOf({
    ...keys,
    UPBIT_REST_URL: "http://api.upbit.com",
    UPBIT_WS_URL: "ws://10.0.0.5:8080/websocket/v1",
  });
  assert.deepEqual(err.problems.map((p) => p.name), ["UPBIT_REST_URL", "UPBIT_WS_URL"]);
  assert.equal(
    err.problems[0]!.problem,
    "must use https:// while Upbit keys are set: http:// sends the signed requests unencrypted (it is allowed only to a loopback host, such as the simulator; got http://api.upbit.com)",
  );
  assert.match(err.problems[1]!.problem, /^must use wss:\/\/ .+got ws:\/\/10\.0\.0\.5:8080\)$/);
  for (const secret of Object.values(keys)) assert.ok(!err.message.includes(secret));
  // The simulator on this machine, and anything without keys (public data only), are fine.
  for (const host of ["127.0.0.1:8700", "localhost:8700", "[::1]:8700"]) {
    const c = parseConfig({
      ...keys,
      UPBIT_REST_URL: `http://${host}`,
      UPBIT_WS_URL: `ws://${host}/websocket/v1`,
    });
    assert.equal(c.UPBIT_REST_URL, `http://${host}`);
  }
  assert.equal(
    parseConfig({ UPBIT_REST_URL: "http://mirror.example" }).UPBIT_REST_URL,
    "http://mirror.example",
  );
});

Deno.test("parseConfig() refuses an API token shorter than 16 characters, without showing it", () => {
  for (const name of ["API_TOKEN", "API_READ_TOKEN"]) {
    const err = problemsOf({ [name]: "short-token-123" });
    assert.deepEqual(err.problems.map((p) => p.name), [name]);
    assert.equal(
      err.problems[0]!.problem,
      "must be at least 16 characters when set (make one with: openssl rand -hex 32) (value hidden)",
    );
    assert.ok(!err.message.includes("short-token-123"));
  }
  assert.equal(parseConfig({ API_TOKEN: "0123456789abcdef" }).API_TOKEN, "0123456789abcdef");
  assert.equal(parseConfig({ API_TOKEN: " " }).API_TOKEN, undefined, "blank is unset");
});

Deno.test("parseConfig() reports several bad values at once, one line each", () => {
  const err = problemsOf({ HTTP_PORT: "x", UPBIT_TRADE_MODE: "y", MARKETS: "z" });
  assert.deepEqual(err.problems.map((p) => p.name).sort(), [
    "HTTP_PORT",
    "MARKETS",
    "UPBIT_TRADE_MODE",
  ]);
  assert.equal(err.message.split("\n").length, 3);
});

Deno.test("parseConfig() never shows a secret value in an error", () => {
  const secret = "postgres-pass-Zq8";
  const err = problemsOf({
    DATABASE_URL: `mysql://user:${secret}@db/x`,
    HTTP_PORT: "nope",
  });
  assert.ok(!err.message.includes(secret));
  assert.match(err.message, /DATABASE_URL .*\(value hidden\)/);
  // Secrets that are valid never reach error text either: the error lists only bad variables.
  const err2 = problemsOf({ UPBIT_SECRET_KEY: "sk-very-secret", HTTP_PORT: "nope" });
  assert.ok(!err2.message.includes("sk-very-secret"));
});

Deno.test("describeDatabaseUrl() and secretValues() hide and list the password", () => {
  assert.equal(
    describeDatabaseUrl("postgres://bob:hunter22@db:5432/upbot"),
    "postgres://bob:***@db:5432/upbot",
  );
  const c = parseConfig({
    DATABASE_URL: "postgres://bob:hunter22@db:5432/upbot",
    UPBIT_ACCESS_KEY: "ak-1234",
    UPBIT_SECRET_KEY: "sk-5678",
    API_TOKEN: "tok-9999-0123456789",
  });
  assert.deepEqual(
    new Set(secretValues(c)),
    new Set([
      "ak-1234",
      "sk-5678",
      "tok-9999-0123456789",
      "postgres://bob:hunter22@db:5432/upbot",
      "hunter22",
    ]),
  );
  // A percent-encoded password: the operator's own encoding and the decoded form are both
  // secrets (encodeURIComponent of the decoded form leaves `!` as is, so it would not find %21).
  const encoded = parseConfig({ DATABASE_URL: "postgres://bob:p%40ss%21word@db:5432/upbot" });
  const listed = secretValues(encoded);
  assert.ok(listed.includes("p%40ss%21word"), listed.join(" "));
  assert.ok(listed.includes("p@ss!word"), listed.join(" "));
});

Deno.test("parseConfig() refuses a DATABASE_URL password that does not percent-decode", () => {
  // `50%off`: `%of` is no escape; connecting (and masking the decoded form) would throw a bare
  // URIError later. Refused here, without showing the password.
  const err = problemsOf({ DATABASE_URL: "postgres://bob:50%off@db:5432/upbot" });
  assert.equal(
    err.message,
    "config: DATABASE_URL the password must be percent-encoded: every % must start %XX with two hex digits (write a literal % as %25) (value hidden)",
  );
  assert.ok(!err.message.includes("50%off") && !err.message.includes("off@"));
  const user = problemsOf({ DATABASE_URL: "postgres://b%zz:50%off@db/upbot" });
  assert.match(user.message, /the user name and the password must be percent-encoded/);
  // Written as %25, the same password is accepted and both its forms are masked.
  const ok = parseConfig({ DATABASE_URL: "postgres://bob:50%25off@db:5432/upbot" });
  assert.ok(secretValues(ok).includes("50%25off"));
  assert.ok(secretValues(ok).includes("50%off"));
});

Deno.test("loadConfig() reads .env, and the environment wins", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/.env`;
    await Deno.writeTextFile(
      path,
      "HTTP_PORT=9000\nMARKETS='KRW-ETH'\n# comment\nexport LOG_LEVEL=debug\n",
    );
    const c = loadConfig({ envFile: path, env: { HTTP_PORT: "9100" } });
    assert.equal(c.HTTP_PORT, 9100);
    assert.deepEqual(c.MARKETS, ["KRW-ETH"]);
    assert.equal(c.LOG_LEVEL, "debug");
    const none = loadConfig({ envFile: `${dir}/missing.env`, env: {} });
    assert.equal(none.HTTP_PORT, 8501);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseEnvFile() handles quotes, comments and rejects junk without echoing it", () => {
  assert.deepEqual(parseEnvFile("A=\"x\\ny\"\nB=plain # note\nC='#kept'"), {
    A: "x\ny",
    B: "plain",
    C: "#kept",
  });
  assert.throws(() => parseEnvFile("OK=1\nthis is secret-ish junk"), (err: Error) => {
    assert.equal(err.message, ".env line 2 is not KEY=value");
    return true;
  });
});

Deno.test("parseEnvFile() ends a quoted value at its closing quote, a comment may follow", () => {
  assert.deepEqual(
    parseEnvFile(
      [
        'TOKEN="abcd" # the API token',
        "PHRASE='I accept' #comment",
        'EMPTY="" ',
        'HASH="a # b"',
        'ESC="say \\"hi\\" \\\\ \\t"',
        'export KEY = "k"',
      ].join("\n"),
    ),
    {
      TOKEN: "abcd",
      PHRASE: "I accept",
      EMPTY: "",
      HASH: "a # b",
      ESC: 'say "hi" \\ \\t',
      KEY: "k",
    },
  );
  // Anything else is an error naming the line and the key, never the value.
  const cases: [string, string][] = [
    ['A=1\nSECRET="s3cr3t-x', ".env line 2 (SECRET): the value's opening \" is never closed"],
    ["SECRET='s3cr3t-x", ".env line 1 (SECRET): the value's opening ' is never closed"],
    ['SECRET="s3cr3t-x\\"', ".env line 1 (SECRET): the value's opening \" is never closed"],
    [
      'SECRET="s3cr3t" -x',
      ".env line 1 (SECRET): text after the value's closing \" (only a # comment may follow it)",
    ],
    [
      "SECRET='s3cr3t'x",
      ".env line 1 (SECRET): text after the value's closing ' (only a # comment may follow it)",
    ],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseEnvFile(text), (err: Error) => {
      assert.equal(err.message, message, text);
      assert.ok(!err.message.includes("s3cr3t"));
      return true;
    });
  }
});

Deno.test("README and .env.example are generated from SETTINGS (deno task config-docs)", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const example = await Deno.readTextFile(new URL("../.env.example", import.meta.url));
  assert.deepEqual(tableRows(readme), tableRows(configTable()), "README config table is current");
  assert.equal(example, envExample(), ".env.example is up to date");
  const documented = tableRows(readme).map((cells) => cells[0]);
  for (const s of SETTINGS) {
    assert.ok(documented.includes(`\`${s.name}\``), `README documents ${s.name}`);
    assert.match(example, new RegExp(`^#? ?${s.name}=`, "m"), `.env.example has ${s.name}`);
  }
});
