/**
 * @module Child `deno` processes started with a clean environment (the chaos suite's upbot and
 * simulator, and the tests' entry points): their output read line by line, kept in memory and
 * optionally appended to a log file.
 */

/** A started child process with its stdout and stderr collected line by line. */
export interface RunningProcess {
  readonly child: Deno.ChildProcess;
  /** The lines printed so far (stdout and stderr interleaved as read); the last `keepLines` when set. */
  readonly lines: string[];
  /** Resolves with the first line matching `pattern`; rejects after `timeoutMs` or once the process ended. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends `signal` (ignored when already gone) and resolves with the exit status once the output is drained. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  /** Resolves with the exit status once the output is drained. */
  exited(): Promise<Deno.CommandStatus>;
}

/** Where and how {@linkcode spawnDeno} runs its child. */
export interface SpawnOptions {
  /** Working directory; the current one when absent. */
  cwd?: string;
  /** The child's environment besides PATH, HOME, DENO_DIR, TMPDIR and NO_COLOR=1 (nothing else is inherited). */
  env?: Record<string, string>;
  /** Every line is also appended to this file (created when missing). */
  logFile?: string;
  /** Keep only the last this many lines in memory (a long run would otherwise grow without end). */
  keepLines?: number;
}

/** How many of the last lines a failed {@linkcode RunningProcess.waitForLine} quotes. */
const QUOTED_LINES = 60;

/** Starts `deno <args>` with exactly `options.env` plus PATH, HOME, DENO_DIR and TMPDIR. */
export function spawnDeno(args: string[], options: SpawnOptions = {}): RunningProcess {
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
  const file = options.logFile
    ? Deno.openSync(options.logFile, { create: true, append: true })
    : null;
  const encoder = new TextEncoder();
  let done = false;
  const keep = (line: string) => {
    file?.writeSync(encoder.encode(line + "\n"));
    lines.push(line);
    if (options.keepLines !== undefined && lines.length > options.keepLines) lines.shift();
  };
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        keep(line);
        for (const w of [...waiters]) {
          if (w.pattern.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
    if (buf) keep(buf);
  };
  const drained = Promise.all([pump(child.stdout), pump(child.stderr)]).finally(() => {
    done = true;
    file?.close();
  });
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
        const fail = (why: string) => {
          const at = waiters.findIndex((w) => w.pattern === pattern);
          if (at >= 0) waiters.splice(at, 1);
          clearInterval(watch);
          clearTimeout(timer);
          const quoted = lines.slice(-QUOTED_LINES).join("\n");
          reject(new Error(`no line matching ${pattern} (${why}):\n${quoted}`));
        };
        const timer = setTimeout(() => fail(`not within ${timeoutMs} ms`), timeoutMs);
        // Once the output is drained no line can come any more: fail now, not at the timeout.
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
