import assert from "node:assert/strict";
import {
  configureLogging,
  createLogger,
  loggingSettings,
  redact,
  registerSecret,
  setLogSink,
} from "../lib/log.ts";

function capture(fn: () => void): string[] {
  const lines: string[] = [];
  const restore = setLogSink((line) => lines.push(line));
  try {
    fn();
  } finally {
    restore();
  }
  return lines;
}

Deno.test("createLogger() writes one JSON object per line with time, level, actor, msg, fields", () => {
  const before = loggingSettings();
  configureLogging({ format: "json", level: "info" });
  try {
    const lines = capture(() => {
      const log = createLogger("executor");
      log.info("Shadow [EXIT_LONG]: side=ask (no API call)", { paper_trade_id: 17, big: 10n });
      log.debug("hidden below the level");
    });
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0]!);
    assert.equal(rec.level, "info");
    assert.equal(rec.actor, "executor");
    assert.equal(rec.msg, "Shadow [EXIT_LONG]: side=ask (no API call)");
    assert.equal(rec.paper_trade_id, 17);
    assert.equal(rec.big, "10");
    assert.ok(!Number.isNaN(Date.parse(rec.time)));
  } finally {
    configureLogging(before);
  }
});

Deno.test("pretty format is one readable line", () => {
  const before = loggingSettings();
  configureLogging({ format: "pretty", level: "debug" });
  try {
    const lines = capture(() => createLogger("feed").warn("reconnecting", { attempt: 2 }));
    assert.match(lines[0]!, /^\d\d:\d\d:\d\d\.\d{3} WARN {2}\[feed\] reconnecting attempt=2$/);
  } finally {
    configureLogging(before);
  }
});

Deno.test("registerSecret() masks the secret wherever it appears, errors included", () => {
  registerSecret("sk-log-test-secret");
  const lines = capture(() =>
    createLogger("t").error("failed", {
      err: new Error("bad key sk-log-test-secret"),
      x: "a sk-log-test-secret b",
    })
  );
  assert.ok(!lines[0]!.includes("sk-log-test-secret"));
  assert.equal(redact("sk-log-test-secret!"), "***!");
});

Deno.test("registerSecret() masks a secret holding quote, backslash or URL characters in every form a line gives it", () => {
  const secret = 'sk"q\\b/s+p%x&y';
  registerSecret(secret);
  const before = loggingSettings();
  try {
    for (const format of ["json", "pretty"] as const) {
      configureLogging({ format, level: "info" });
      const lines = capture(() =>
        createLogger("t").warn(`refused ${secret}`, {
          err: new Error(`bad key ${secret}`),
          nested: { body: JSON.stringify({ key: secret }) },
          url: `https://example.invalid/hook?token=${encodeURIComponent(secret)}`,
        })
      );
      assert.equal(lines.length, 1);
      const line = lines[0]!;
      // Each form the secret can take, and its tell-tale core, is absent.
      for (
        const form of [secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)]
      ) {
        assert.ok(!line.includes(form), `${format}: ${form} in ${line}`);
      }
      assert.ok(!line.includes("b/s+p"), `${format}: ${line}`);
      assert.ok(line.includes("***"), line);
    }
  } finally {
    configureLogging(before);
  }
});
