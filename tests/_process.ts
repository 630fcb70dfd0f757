/**
 * @module Helpers to run upbot entry points as subprocesses in tests and read their log lines.
 */

/** A started subprocess with its stdout and stderr collected line by line. */
export interface RunningProcess {
  readonly child: Deno.ChildProcess;
  /** Every line printed so far (stdout and stderr interleaved as read). */
  readonly lines: string[];
  /** Resolves with the first line matching `pattern`, or rejects after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends `signal` and resolves with the exit status once both streams are drained. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  /** Resolves with the exit status and the drained output. */
  exited(): Promise<Deno.CommandStatus>;
}

/** Starts `deno <args>` in `cwd` with exactly `env` (plus PATH/HOME/DENO_DIR). */
export function spawnDeno(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): RunningProcess {
  const base: Record<string, string> = {};
  for (const k of ["PATH", "HOME", "DENO_DIR", "TMPDIR"]) {
    const v = Deno.env.get(k);
    if (v) base[k] = v;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: options.cwd,
    env: { ...base, NO_COLOR: "1", ...options.env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        for (const w of [...waiters]) {
          if (w.pattern.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
    if (buf) lines.push(buf);
  };
  const drained = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const exited = async () => {
    const [status] = await Promise.all([child.status, drained]);
    return status;
  };
  return {
    child,
    lines,
    waitForLine(pattern, timeoutMs = 60_000) {
      const found = lines.find((l) => pattern.test(l));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.findIndex((w) => w.pattern === pattern), 1);
          reject(
            new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${lines.join("\n")}`),
          );
        }, timeoutMs);
        waiters.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
    async stop(signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch { /* already gone */ }
      return await exited();
    },
    exited,
  };
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
