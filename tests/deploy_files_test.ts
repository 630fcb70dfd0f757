/**
 * @module Consistency of the deployment files (Dockerfile, compose.yaml, .dockerignore) with the
 * code: every path they name exists, ports and variable names match lib/config.ts's settings
 * table, the health check calls a real route that needs no token, the Deno version is the one CI
 * pins, and the image holds every file the compile task embeds.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { isLoopbackHost, parseConfig, SETTINGS } from "../lib/config.ts";
import { createApp } from "../lib/http/app.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const read = (file: string) => Deno.readTextFile(join(ROOT, file));
const SETTING_NAMES: ReadonlySet<string> = new Set(SETTINGS.map((s) => s.name));

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(join(ROOT, path));
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Dockerfile instructions (continuation lines joined), comments dropped. */
async function dockerfile(): Promise<{ op: string; args: string }[]> {
  const text = (await read("Dockerfile")).replace(/\\\n\s*/g, " ");
  return text.split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => {
      const [op, ...rest] = line.split(/\s+/);
      return { op: op!.toUpperCase(), args: rest.join(" ") };
    });
}

/** `ENV A=1 B=2` -> { A: "1", B: "2" } over every ENV instruction. */
function envOf(instructions: { op: string; args: string }[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { args } of instructions.filter((i) => i.op === "ENV")) {
    for (const pair of args.split(/\s+/)) {
      const [k, v] = pair.split("=");
      out[k!] = v ?? "";
    }
  }
  return out;
}

async function ciDenoVersion(): Promise<string> {
  const m = /^DENO_VERSION=(\S+)$/m.exec(await read(".ci/run"));
  assert.ok(m, ".ci/run pins DENO_VERSION");
  return m[1]!;
}

Deno.test("Dockerfile: the official image at CI's Deno version, non-root, copies what exists", async () => {
  const ins = await dockerfile();
  const from = ins.filter((i) => i.op === "FROM");
  assert.deepEqual(from.map((i) => i.args), [`denoland/deno:${await ciDenoVersion()}`]);
  const user = ins.filter((i) => i.op === "USER").at(-1);
  assert.ok(user && !/^(root|0)(:|$)/.test(user.args), "the last USER is not root");
  for (const copy of ins.filter((i) => i.op === "COPY")) {
    const words = copy.args.split(/\s+/).filter((w) => !w.startsWith("--"));
    for (const src of words.slice(0, -1)) {
      if (src.includes("*")) continue;
      assert.ok(await exists(src), `COPY ${src}: no such path`);
    }
  }
  // The image copies every file the compile task embeds and caches the actor modules.
  const copied = ins.filter((i) => i.op === "COPY").flatMap((i) =>
    i.args.split(/\s+/).filter((w) => !w.startsWith("--")).slice(0, -1)
  );
  const compile: string = JSON.parse(await read("deno.json")).tasks.compile;
  const includes = [...compile.matchAll(/--include (\S+)/g)].map((m) => m[1]!);
  for (const inc of includes) {
    assert.ok(
      copied.some((c) => inc === c || inc.startsWith(c.endsWith("/") ? c : c + "/")),
      `${inc} is embedded by compile but not copied into the image`,
    );
  }
  const cache = ins.find((i) => i.op === "RUN" && /deno cache/.test(i.args));
  assert.ok(cache && /actors\/\*\.ts/.test(cache.args), "the image caches actors/*.ts");
  const install = ins.findIndex((i) => i.op === "RUN" && /deno install/.test(i.args));
  const firstSource = ins.findIndex((i) => i.op === "COPY" && /\bmain\.ts\b/.test(i.args));
  assert.ok(install >= 0 && install < firstSource, "dependencies are installed before the code");
});

Deno.test("Dockerfile: variables are settings, port and volume match them", async () => {
  const ins = await dockerfile();
  const env = envOf(ins);
  for (const name of Object.keys(env)) {
    assert.ok(SETTING_NAMES.has(name), `ENV ${name} is not in lib/config.ts SETTINGS`);
  }
  const config = parseConfig({ ...env, API_TOKEN: "x".repeat(32) });
  const expose = ins.filter((i) => i.op === "EXPOSE").map((i) => Number(i.args));
  assert.deepEqual(expose, [config.HTTP_PORT]);
  const volume = ins.find((i) => i.op === "VOLUME");
  assert.ok(volume, "VOLUME");
  assert.deepEqual(JSON.parse(volume.args), [env.DATA_DIR]);
  const cmd = ins.find((i) => i.op === "CMD");
  const start: string = JSON.parse(await read("deno.json")).tasks.start;
  assert.ok(cmd, "CMD");
  const args = JSON.parse(cmd.args) as string[];
  for (const flag of start.split(/\s+/).filter((w) => w.startsWith("--"))) {
    assert.ok(args.includes(flag), `CMD has start's ${flag}`);
  }
  assert.equal(args.at(-1), "main.ts");
});

Deno.test("Dockerfile: HEALTHCHECK calls a real route that answers without a token", async () => {
  const ins = await dockerfile();
  const check = ins.find((i) => i.op === "HEALTHCHECK");
  assert.ok(check, "HEALTHCHECK");
  const m = /http:\/\/127\.0\.0\.1:\$\{[^}]*'HTTP_PORT'[^}]*'(\d+)'\s*\}(\/[a-z]+)/.exec(
    check.args,
  );
  assert.ok(m, `HEALTHCHECK URL not understood: ${check.args}`);
  const [, defaultPort, path] = m;
  assert.equal(defaultPort, SETTINGS.find((s) => s.name === "HTTP_PORT")!.defaultText);
  // The container listens on 0.0.0.0, so every path but the open ones needs the token.
  const app = createApp({
    liveness: () => ({ ok: true, db: "ok", uptime_sec: 1 }),
    readiness: () => ({ ready: false, problems: ["starting"] }),
    auth: { token: "t".repeat(32), everywhere: true },
  });
  const res = await app.request(path!);
  assert.equal(res.status, 200, `${path} answered ${res.status}`);
  assert.equal((await res.json()).ok, true);
  const guarded = await app.request("/no-such-route");
  assert.notEqual(guarded.status, 200);
});

interface ComposeService {
  image?: string;
  build?: string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  command?: string[];
}

async function compose(): Promise<{ services: Record<string, ComposeService>; volumes: object }> {
  return parseYaml(await read("compose.yaml"));
}

Deno.test("compose.yaml: every bind-mounted path exists and named volumes are declared", async () => {
  const file = await compose();
  assert.deepEqual(
    Object.keys(file.services).sort(),
    ["grafana", "postgres", "prometheus", "upbot"],
  );
  assert.ok(await exists(file.services.upbot!.build!), "build context");
  for (const [name, service] of Object.entries(file.services)) {
    for (const volume of service.volumes ?? []) {
      const [source] = volume.split(":");
      if (source!.startsWith(".") || source!.startsWith("/")) {
        assert.ok(await exists(source!), `${name}: ${source} does not exist`);
      } else {
        assert.ok(source! in file.volumes, `${name}: volume ${source} is not declared`);
      }
    }
  }
  // Grafana's provisioning loads dashboards from where compose mounts grafana/dashboards.
  const provider = parseYaml(await read("grafana/provisioning/dashboards/upbot.yaml"));
  const dashboardsAt = provider.providers[0].options.path;
  assert.ok(
    file.services.grafana!.volumes!.some((v) =>
      v.startsWith(`./grafana/dashboards:${dashboardsAt}`)
    ),
    `grafana/dashboards is mounted at ${dashboardsAt}`,
  );
  // Prometheus's rule files sit beside its configuration.
  const prom = parseYaml(await read("prometheus/prometheus.yml"));
  for (const rules of prom.rule_files as string[]) {
    assert.ok(
      file.services.prometheus!.volumes!.some((v) =>
        v.startsWith(`./prometheus/${rules}:/etc/prometheus/${rules}`)
      ),
      `prometheus rule file ${rules} is mounted`,
    );
  }
});

Deno.test("compose.yaml: upbot's variables are settings; ports agree everywhere", async () => {
  const file = await compose();
  const upbot = file.services.upbot!;
  const env = upbot.environment!;
  for (const name of Object.keys(env)) {
    assert.ok(SETTING_NAMES.has(name), `upbot's ${name} is not in lib/config.ts SETTINGS`);
  }
  const config = parseConfig({ ...env, DATABASE_URL: "postgres://upbot:pw@postgres:5432/upbot" });
  assert.equal(config.HTTP_HOST, "0.0.0.0");
  const port = config.HTTP_PORT;
  assert.ok(upbot.ports!.some((p) => p.endsWith(`:${port}`)), `upbot publishes ${port}`);
  assert.equal(config.DATA_DIR, envOf(await dockerfile()).DATA_DIR);
  assert.ok(upbot.volumes!.some((v) => v.endsWith(`:${config.DATA_DIR}`)), "DATA_DIR is a volume");
  const db = new URL(env.DATABASE_URL!.replace(/\$\{[^}]*\}/, "pw"));
  assert.equal(db.hostname, "postgres");
  assert.equal(db.pathname, `/${file.services.postgres!.environment!.POSTGRES_DB}`);
  assert.equal(db.username, file.services.postgres!.environment!.POSTGRES_USER);
  // Prometheus scrapes the upbot service on that port; Grafana reaches it there too.
  const prom = parseYaml(await read("prometheus/prometheus.yml"));
  const targets = prom.scrape_configs.flatMap((s: { static_configs: { targets: string[] }[] }) =>
    s.static_configs.flatMap((c) => c.targets)
  );
  assert.deepEqual(targets, [`upbot:${port}`]);
  assert.equal(file.services.grafana!.environment!.UPBOT_URL, `http://upbot:${port}`);
  const tokenFile = prom.scrape_configs[0].authorization.credentials_file;
  assert.ok(file.services.prometheus!.command!.join(" ").includes(`> ${tokenFile}`));
});

/** `${NAME:?message}` -> NAME (the compose variable a value is taken from), else undefined. */
function composeVariable(value: string | undefined): string | undefined {
  return /^\$\{([A-Z_]+)(?::\?[^}]*)?\}$/.exec(value ?? "")?.[1];
}

/** `value` with every `${NAME…}` replaced by `dotEnv[NAME]`, as compose does. */
function interpolate(value: string, dotEnv: Record<string, string>): string {
  return value.replace(/\$\{([A-Z_]+)[^}]*\}/g, (_, name: string) => dotEnv[name] ?? "");
}

Deno.test("compose.yaml: Grafana and Prometheus get the read token, which opens no control", async () => {
  const file = await compose();
  const upbotEnv = file.services.upbot!.environment!;
  const fullVar = composeVariable(upbotEnv.API_TOKEN);
  const readVar = composeVariable(upbotEnv.API_READ_TOKEN);
  assert.ok(fullVar && readVar, "upbot's API_TOKEN and API_READ_TOKEN come from .env variables");
  assert.notEqual(fullVar, readVar);
  // Only upbot sees the full token.
  for (const [name, service] of Object.entries(file.services)) {
    if (name === "upbot") continue;
    const text = JSON.stringify(service);
    assert.ok(!text.includes(`\${${fullVar}`), `${name} receives ${fullVar}`);
  }
  const prometheus = file.services.prometheus!;
  const grafana = file.services.grafana!;
  assert.equal(composeVariable(prometheus.environment!.UPBOT_READ_TOKEN), readVar);
  assert.equal(composeVariable(grafana.environment!.UPBOT_READ_TOKEN), readVar);
  // Prometheus writes that variable into the file its scrape config reads the token from.
  const prom = parseYaml(await read("prometheus/prometheus.yml"));
  const tokenFile = prom.scrape_configs[0].authorization.credentials_file;
  assert.match(
    prometheus.command!.join(" "),
    new RegExp(`printf %s "\\$\\$UPBOT_READ_TOKEN" > ${tokenFile} `),
  );
  // Grafana's data source sends that variable as the bearer token.
  const datasource = parseYaml(await read("grafana/provisioning/datasources/upbot.yaml"))
    .datasources[0];
  assert.equal(datasource.jsonData.httpHeaderName1, "Authorization");
  assert.equal(datasource.secureJsonData.httpHeaderValue1, "Bearer ${UPBOT_READ_TOKEN}");
  assert.equal(datasource.url, "${UPBOT_URL}/grafana");

  // With an .env holding two tokens, what Grafana and Prometheus send reads but cannot control.
  const dotEnv = { [fullVar]: "f".repeat(32), [readVar]: "r".repeat(32), POSTGRES_PASSWORD: "pw" };
  const upbot: Record<string, string> = {};
  for (const [k, v] of Object.entries(upbotEnv)) upbot[k] = interpolate(v, dotEnv);
  const config = parseConfig(upbot);
  const app = createApp({
    liveness: () => ({ ok: true, db: "ok", uptime_sec: 1 }),
    readiness: () => ({ ready: true, problems: [] }),
    auth: {
      token: config.API_TOKEN,
      readToken: config.API_READ_TOKEN,
      everywhere: !isLoopbackHost(config.HTTP_HOST),
    },
  });
  const sent = {
    authorization: interpolate(datasource.secureJsonData.httpHeaderValue1, {
      UPBOT_READ_TOKEN: interpolate(grafana.environment!.UPBOT_READ_TOKEN!, dotEnv),
    }),
  };
  assert.equal(
    sent.authorization,
    `Bearer ${interpolate(prometheus.environment!.UPBOT_READ_TOKEN!, dotEnv)}`,
  );
  const metrics = await app.request("/metrics", { headers: { ...sent, host: "upbot:8501" } });
  assert.equal(metrics.status, 404, "past the token check (no such route in this bare app)");
  await metrics.body?.cancel();
  for (const path of ["/api/control/resume", "/api/control/halt", "/api/control/alarms/clear"]) {
    const res = await app.request(path, { method: "POST", body: "{}", headers: sent });
    assert.equal(res.status, 403, path);
    await res.body?.cancel();
  }
  const withoutToken = await app.request("/metrics");
  assert.equal(withoutToken.status, 401);
  await withoutToken.body?.cancel();
});

Deno.test(".dockerignore keeps secrets and data out, and nothing the image copies", async () => {
  const ignored = (await read(".dockerignore")).split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  for (const secret of [".env", "data/", ".git"]) assert.ok(ignored.includes(secret), secret);
  const copied = (await dockerfile()).filter((i) => i.op === "COPY").flatMap((i) =>
    i.args.split(/\s+/).filter((w) => !w.startsWith("--")).slice(0, -1)
  );
  for (const src of copied) {
    for (const pattern of ignored) {
      const bare = pattern.replace(/\/$/, "");
      assert.ok(src !== bare && !src.startsWith(bare + "/"), `${src} is ignored by ${pattern}`);
    }
  }
});
