/**
 * @module Child processes of the crash suite: `deno` entry points started with a clean
 * environment, their output appended to a log file and kept (last lines) in memory.
 */

/** A started child process. */
export interface ChildRun {
  readonly child: Deno.ChildProcess;
  /** The last lines printed (stdout and stderr), at most 400. */
  readonly tail: string[];
  /** Resolves with the first line matching `pattern`; rejects after `timeoutMs` or on exit. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Sends `signal` (ignored when already gone) and resolves with the exit status. */
  stop(signal: Deno.Signal): Promise<Deno.CommandStatus>;
  /** Resolves with the exit status once the output is drained. */
  exited(): Promise<Deno.CommandStatus>;
}

const TAIL_LINES = 400;

/** Starts `deno <args>` in `cwd` with `env` (plus PATH, HOME, DENO_DIR, TMPDIR) and logs to `logFile`. */
export function spawnChild(
  args: string[],
  o: { cwd: string; env: Record<string, string>; logFile: string },
): ChildRun {
  const base: Record<string, string> = {};
  for (const k of ["PATH", "HOME", "DENO_DIR", "TMPDIR"]) {
    const v = Deno.env.get(k);
    if (v) base[k] = v;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: o.cwd,
    env: { ...base, NO_COLOR: "1", ...o.env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const tail: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const file = Deno.openSync(o.logFile, { create: true, append: true });
  const encoder = new TextEncoder();
  let done = false;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        file.writeSync(encoder.encode(line + "\n"));
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        for (const w of [...waiters]) {
          if (w.pattern.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
    if (buf) {
      file.writeSync(encoder.encode(buf + "\n"));
      tail.push(buf);
    }
  };
  const drained = Promise.all([pump(child.stdout), pump(child.stderr)]).finally(() => {
    done = true;
    file.close();
  });
  const exited = async () => {
    const [status] = await Promise.all([child.status, drained]);
    return status;
  };
  return {
    child,
    tail,
    waitForLine(pattern, timeoutMs) {
      const found = tail.find((l) => pattern.test(l));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const fail = (why: string) => {
          const at = waiters.findIndex((w) => w.pattern === pattern);
          if (at >= 0) waiters.splice(at, 1);
          clearInterval(watch);
          clearTimeout(timer);
          reject(new Error(`no line matching ${pattern} (${why}):\n${tail.slice(-30).join("\n")}`));
        };
        const timer = setTimeout(() => fail(`not within ${timeoutMs} ms`), timeoutMs);
        const watch = setInterval(() => done && fail("the process ended"), 200);
        waiters.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            clearInterval(watch);
            resolve(line);
          },
        });
      });
    },
    async stop(signal) {
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
