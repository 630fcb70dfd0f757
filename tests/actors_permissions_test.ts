import assert from "node:assert/strict";
import { setLogSink } from "../lib/log.ts";
import { actorPermissions, hostPort } from "../lib/actors/permissions.ts";
import { UpbotSupervisor } from "../lib/pipeline/supervisor.ts";

async function waitFor(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

Deno.test("actorPermissions() denies everything not listed", () => {
  assert.deepEqual(actorPermissions(), {
    env: false,
    net: false,
    read: false,
    write: false,
    run: false,
    ffi: false,
    sys: false,
    import: false,
  });
  assert.deepEqual(actorPermissions({ net: ["api.upbit.com:443"], env: ["PG*"] }), {
    env: ["PG*"],
    net: ["api.upbit.com:443"],
    read: false,
    write: false,
    run: false,
    ffi: false,
    sys: false,
    import: false,
  });
});

Deno.test("hostPort() gives the host:port a URL connects to", () => {
  assert.equal(hostPort("https://api.upbit.com"), "api.upbit.com:443");
  assert.equal(hostPort("wss://api.upbit.com/websocket/v1"), "api.upbit.com:443");
  assert.equal(hostPort("http://127.0.0.1:8600/v1"), "127.0.0.1:8600");
  assert.equal(hostPort("postgres://u:p@db.local/upbot"), "db.local:5432");
  assert.equal(hostPort("postgres://u:p@127.0.0.1:6543/upbot"), "127.0.0.1:6543");
  assert.throws(() => hostPort("file:///etc/passwd"), TypeError);
});

Deno.test("A worker without keys cannot read them from the environment or otherwise, nor reach an unlisted host", async () => {
  const restoreSink = setLogSink(() => {});
  const secret = "sk-test-0123456789abcdef";
  Deno.env.set("UPBIT_SECRET_KEY", secret);
  const secretFile = await Deno.makeTempFile({ suffix: ".env" });
  await Deno.writeTextFile(secretFile, `UPBIT_SECRET_KEY=${secret}\n`);
  const handler = () => new Response("hello");
  const allowed = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const denied = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const supervisor = new UpbotSupervisor({
    actors: [{
      name: "feed",
      module: new URL("./fixtures/actors/snoop.ts", import.meta.url),
      config: {
        envName: "UPBIT_SECRET_KEY",
        secretFile,
        allowedUrl: `http://127.0.0.1:${allowed.addr.port}/`,
        deniedUrl: `http://127.0.0.1:${denied.addr.port}/`,
      },
      permissions: actorPermissions({ net: [`127.0.0.1:${allowed.addr.port}`] }),
    }],
    secrets: [secret],
    log: { level: "error", format: "json" },
    heartbeatIntervalMs: 50,
    statusLogIntervalMs: 0,
  });
  try {
    await supervisor.start();
    const metrics = () => supervisor.status()[0]?.metrics ?? {};
    await waitFor("snoop results", () => "fetchDenied" in metrics());
    assert.deepEqual(metrics(), {
      envGet: "NotCapable",
      envToObject: "NotCapable",
      processEnv: "NotCapable",
      procEnviron: "NotCapable",
      readSecretFile: "NotCapable",
      run: "NotCapable",
      fetchAllowed: "ok:200",
      fetchDenied: "NotCapable",
    });
    // The same reads succeed here in the main thread, so the denials above are the worker's.
    assert.equal(Deno.env.get("UPBIT_SECRET_KEY"), secret);
    const direct = await fetch(`http://127.0.0.1:${denied.addr.port}/`);
    assert.equal(await direct.text(), "hello");
  } finally {
    await supervisor.stop();
    await allowed.shutdown();
    await denied.shutdown();
    Deno.env.delete("UPBIT_SECRET_KEY");
    await Deno.remove(secretFile);
    restoreSink();
  }
});
