# upbot container image.
#   docker build -t upbot .
#   docker run -p 127.0.0.1:8501:8501 -v upbot-data:/app/data --env-file .env --stop-timeout 30 upbot
#   (.env holds API_TOKEN and the keys, never on the command line; see README, Deployment)
# Without the named volume the container starts a fresh database (see README, Deployment).
FROM denoland/deno:2.9.6

WORKDIR /app
# The image's unprivileged user (uid 1993) owns the app folder, the data folder and the Deno cache.
RUN mkdir -p /app/data && chown -R deno:deno /app
USER deno

# Dependencies in their own layer: rebuilt only when deno.json or deno.lock change.
COPY --chown=deno:deno deno.json deno.lock ./
RUN deno install --frozen

COPY --chown=deno:deno main.ts ./
COPY --chown=deno:deno lib/ lib/
COPY --chown=deno:deno actors/ actors/
COPY --chown=deno:deno migrations/ migrations/
# `docker compose exec upbot deno task halt --reason "..."` (and resume, flatten) run this.
COPY --chown=deno:deno tools/control.ts tools/
# The actor modules are loaded by Workers, outside main.ts's import graph: cache them too.
RUN deno cache --frozen main.ts actors/*.ts tools/control.ts

ENV HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8501 \
    DATA_DIR=/app/data
EXPOSE 8501
# The embedded database lives here; mount a named volume or every new container starts empty.
VOLUME ["/app/data"]

# /healthz is open without the API token and answers 200 while the process and its database live.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["deno", "eval", "const r = await fetch(`http://127.0.0.1:${Deno.env.get('HTTP_PORT') ?? '8501'}/healthz`); Deno.exit(r.ok ? 0 : 1)"]

# SIGTERM (docker stop) stops upbot cleanly: actors finish, the database closes.
STOPSIGNAL SIGTERM
# The V8 flags are deno.json start's (docs/operations.md, "Memory").
CMD ["deno", "run", "--cached-only", "--v8-flags=--max-semi-space-size=1,--heap-growing-percent=20", "--unstable-worker-options", "--allow-all", "main.ts"]
