/**
 * @module Config fuzz: every setting of `SETTINGS` gets random strings. `parseConfig` either
 * accepts a value (and the value is usable: numbers finite, the same as the setting's schema
 * gives) or throws `ConfigError` with exactly one one-line problem naming that variable (never a
 * secret's value). A sample of bad environments runs `main.ts` as a subprocess: exit code 2, one
 * line per bad variable, no stack trace.
 *
 * `FUZZ_SEED=<n>` reruns one seed (each failure message names its seed and case).
 */
import assert from "node:assert/strict";
import { ConfigError, parseConfig, type Setting, SETTINGS } from "../lib/config.ts";
import { spawnDeno } from "../lib/subprocess.ts";
import { mulberry32 } from "../lib/random.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31));

/** The seeded stream of lib/random.ts with the picks the fuzz needs. */
function prng(seed: number) {
  const next = mulberry32(seed);
  return {
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
  };
}
type Rng = ReturnType<typeof prng>;

const SPECIAL = [
  "",
  " ",
  "\t",
  "\n",
  "true",
  "TRUE",
  "yes",
  "0",
  "-0",
  "1",
  "-1",
  "0.5",
  "1e3",
  "1e999",
  "-1e999",
  "NaN",
  "Infinity",
  "0x10",
  "08",
  " 5 ",
  "5\n6",
  "65536",
  "9007199254740993",
  "shadow",
  "live",
  "test",
  "default",
  "KRW-BTC",
  "KRW-BTC,,KRW-ETH",
  "krw-btc",
  "KRW-BTC,KRW-BTC",
  "http://127.0.0.1:8790",
  "ws://127.0.0.1:8790/websocket/v1",
  "ftp://x",
  "postgres://u:p@h:5432/d",
  "postgres://",
  "debug",
  "json",
  "pretty",
  "\u0000",
  "\ud800",
  "💥",
  "${HOME}",
  "x".repeat(100_000),
  "a\r\nb",
];

/** A random string: a special value, random printable text, random code units, or a mix. */
function randomValue(rng: Rng): string {
  switch (rng.int(4)) {
    case 0:
      return rng.pick(SPECIAL);
    case 1:
      return Array.from({ length: rng.int(20) }, () => String.fromCharCode(32 + rng.int(95)))
        .join("");
    case 2:
      return Array.from({ length: rng.int(12) }, () => String.fromCharCode(rng.int(0x10000)))
        .join("");
    default:
      return rng.pick(SPECIAL) + String(rng.int(100_000)) + rng.pick(SPECIAL).slice(0, 10);
  }
}

/**
 * The one-line problem for each of `names`, checked to be clear; throws (test failure) otherwise.
 * With `names` empty every value passed its own schema, so the refusal must come from a rule
 * across settings (e.g. API_TOKEN required off loopback, ORDER_KRW_AMOUNT above
 * RISK_MAX_ORDER_KRW): one clear line per problem, each naming a real setting.
 */
function assertOneClearProblem(err: unknown, names: string[], values: Record<string, string>) {
  const context = `seed ${SEED}: ${JSON.stringify(values).slice(0, 300)}`;
  assert.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}; ${context}`);
  if (names.length > 0) {
    assert.deepEqual(err.problems.map((p) => p.name).sort(), [...names].sort(), context);
  } else {
    assert.ok(err.problems.length > 0, context);
    for (const p of err.problems) {
      assert.ok((SETTINGS as readonly Setting[]).some((s) => s.name === p.name), context);
    }
  }
  const lines = err.message.split("\n");
  assert.equal(lines.length, err.problems.length, `one line per problem; ${context}`);
  for (const line of lines) {
    assert.match(line, /^config: [A-Z_]+ \S/, context);
    assert.ok(line.length < 400, `a short line (${line.length}); ${context}`);
    assert.ok(!line.includes("\r") && !line.includes("\u0000"), context);
  }
  // A secret's own line never shows its value (another variable may legitimately show the same
  // text, so only the secret's line is checked).
  for (const p of err.problems) {
    const setting = (SETTINGS as readonly Setting[]).find((s) => s.name === p.name);
    if (setting?.secret && values[p.name] !== undefined) {
      assert.ok(p.problem.endsWith(" (value hidden)"), `${p.name}: ${p.problem}; ${context}`);
      assert.ok(!p.problem.includes("(got "), context);
    }
  }
}

Deno.test(`fuzz: every setting with random strings parses to a valid value or one clear problem [seed ${SEED}]`, () => {
  const rng = prng(SEED);
  let accepted = 0;
  let refused = 0;
  for (const setting of SETTINGS as readonly Setting[]) {
    for (let i = 0; i < 300; i++) {
      const value = randomValue(rng);
      const env = { [setting.name]: value };
      let config;
      try {
        config = parseConfig(env);
      } catch (err) {
        // A value its own schema accepts can still break a rule across settings.
        const own = setting.schema.safeParse(value).success ? [] : [setting.name];
        assertOneClearProblem(err, own, env);
        refused++;
        continue;
      }
      accepted++;
      const got = (config as Record<string, unknown>)[setting.name];
      const direct = setting.schema.safeParse(value);
      assert.ok(direct.success, `seed ${SEED}, ${setting.name}=${JSON.stringify(value)}`);
      assert.deepEqual(got, direct.data);
      if (typeof got === "number") {
        assert.ok(Number.isFinite(got), `seed ${SEED}: ${setting.name}=${JSON.stringify(value)}`);
      }
    }
  }
  assert.ok(accepted > 100 && refused > 1000, `accepted ${accepted}, refused ${refused}`);
});

Deno.test(`fuzz: several bad variables at once give one line each [seed ${SEED}]`, () => {
  const rng = prng(SEED ^ 0x77);
  for (let i = 0; i < 500; i++) {
    const env: Record<string, string> = {};
    for (let k = 1 + rng.int(6); k > 0; k--) {
      env[rng.pick(SETTINGS as readonly Setting[]).name] = randomValue(rng);
    }
    const bad = Object.keys(env).filter((name) =>
      !(SETTINGS as readonly Setting[]).find((s) => s.name === name)!.schema.safeParse(env[name])
        .success
    );
    try {
      parseConfig(env);
      assert.deepEqual(bad, [], `seed ${SEED}, case ${i}: accepted although bad`);
    } catch (err) {
      assertOneClearProblem(err, bad, env);
    }
  }
});

/** Bad environments for the subprocess sample: each with the variables that are bad. */
function badEnvironments(rng: Rng, count: number): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  while (out.length < count) {
    const env: Record<string, string> = {};
    for (let k = 1 + rng.int(3); k > 0; k--) {
      const s = rng.pick(SETTINGS as readonly Setting[]);
      const v = randomValue(rng);
      // The environment of a process cannot hold NUL, and a value must be bad to be sampled.
      if (
        v.includes("\u0000") || !v.isWellFormed() || v.length > 10_000 ||
        s.schema.safeParse(v).success
      ) continue;
      env[s.name] = v;
    }
    if (Object.keys(env).length > 0) out.push(env);
  }
  return out;
}

Deno.test(`fuzz: main.ts with bad settings exits 2 with one line per variable, no stack trace [seed ${SEED}]`, async () => {
  const rng = prng(SEED ^ 0x99);
  const root = new URL("..", import.meta.url).pathname;
  const cwd = await Deno.makeTempDir({ prefix: "upbot_config_fuzz_" });
  try {
    for (const [i, env] of badEnvironments(rng, 4).entries()) {
      const proc = spawnDeno(
        [
          "run",
          "--config",
          `${root}deno.json`,
          "--unstable-worker-options",
          "--allow-all",
          `${root}main.ts`,
        ],
        { cwd, env: { DATA_DIR: `${cwd}/data`, HTTP_PORT: "0", ...env } },
      );
      // A case that wrongly starts upbot is stopped rather than left running.
      const timer = setTimeout(() => proc.child.kill("SIGKILL"), 30_000);
      const status = await proc.exited();
      clearTimeout(timer);
      const context = `seed ${SEED}, case ${i}, env ${JSON.stringify(env).slice(0, 300)}:\n${
        proc.lines.join("\n").slice(0, 2000)
      }`;
      assert.equal(status.code, 2, context);
      assert.ok(!proc.lines.some((l) => /^\s+at /.test(l)), `no stack trace; ${context}`);
      assert.ok(!proc.lines.some((l) => /Uncaught/.test(l)), context);
      const configLines = proc.lines.filter((l) => l.includes('"actor":"config"'));
      assert.equal(configLines.length, Object.keys(env).length, context);
      for (const name of Object.keys(env)) {
        assert.equal(
          configLines.filter((l) => JSON.parse(l).msg.startsWith(`${name} `)).length,
          1,
          `one line names ${name}; ${context}`,
        );
      }
    }
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});
