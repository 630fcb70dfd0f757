# upbot container image. Build: docker build -t upbot .   Run: docker run -p 8501:8501 -v upbot-data:/app/data upbot
# (The deployment issue finishes this file: compiled binary, non-root user, health check.)
FROM denoland/deno:2.9.6
WORKDIR /app
COPY deno.json deno.lock ./
COPY main.ts ./
COPY lib/ lib/
COPY actors/ actors/
COPY migrations/ migrations/
RUN deno cache main.ts
ENV HTTP_HOST=0.0.0.0 DATA_DIR=/app/data
EXPOSE 8501
VOLUME ["/app/data"]
CMD ["deno", "task", "start"]
