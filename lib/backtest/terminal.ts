/**
 * @module Output helpers of the command-line tools: plain text to stdout, one-line errors and a
 * progress line on stderr (drawn only when stderr is a terminal, so pipes and logs stay clean).
 */

const encoder = new TextEncoder();

/** Writes `text` to stdout as is. */
export function print(text: string): void {
  Deno.stdout.writeSync(encoder.encode(text));
}

/** Writes one line to stderr. */
export function printError(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/**
 * A progress line redrawn in place on a terminal, at most every 100 ms; silent otherwise.
 *
 * @example
 * ```ts ignore
 * const progress = new Progress();
 * progress.update("KRW-BTC 40%");
 * progress.done();
 * ```
 */
export class Progress {
  readonly enabled: boolean;
  #last = 0;
  #shown = false;

  constructor(enabled = Deno.stderr.isTerminal()) {
    this.enabled = enabled;
  }

  /** Redraws the line (throttled). */
  update(text: string): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.#last < 100) return;
    this.#last = now;
    this.#shown = true;
    Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${text}`));
  }

  /** Clears the line. */
  done(): void {
    if (this.enabled && this.#shown) Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
    this.#shown = false;
  }
}

/** `[#####.....] 50%` for a fraction 0..1. */
export function bar(fraction: number, width = 20): string {
  const f = Math.min(1, Math.max(0, fraction));
  const full = Math.round(f * width);
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${Math.floor(f * 100)}%`;
}
