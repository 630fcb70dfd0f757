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
import { parseConfig, SETTINGS } from "../lib/config.ts";
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
  // The API token reaches all three from the same variable.
  assert.equal(env.API_TOKEN, file.services.prometheus!.environment!.UPBOT_API_TOKEN);
  assert.equal(env.API_TOKEN, file.services.grafana!.environment!.UPBOT_API_TOKEN);
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
