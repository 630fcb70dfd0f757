/**
 * @module Recorded trades: gzip NDJSON files, one per market and UTC day, under
 * `DATA_DIR/trades/<MARKET>/<YYYY-MM-DD>.ndjson.gz`, written by the feed (`RECORD_TRADES=true`)
 * and by `deno task fetch-history`, read back by `deno task backtest --source files`.
 *
 * One JSON object a line: `{"market","price","volume","side","ts","seq"}` with `seq` (Upbit's
 * `sequential_id`) as a decimal string, so ids above 2^53 stay exact. Lines are in no particular
 * order and may repeat (the recorder and fetch-history can both write a trade): readers sort by
 * time and drop duplicates.
 *
 * Crash safety: each write appends a complete gzip member (a file is a valid multi-member gzip).
 * A crash can tear only the last member; a reader decodes what it can and skips a torn last line,
 * and a writer repairs such a file (rewritten whole, atomically) before it appends to it again.
 */
import { constants, gunzipSync, gzipSync } from "node:zlib";
import { z } from "zod";
import { type Bar, BarAggregator, type Trade, tradeKey } from "../strategy/bars.ts";

const DAY_MS = 86_400_000;

const LineSchema = z.object({
  market: z.string(),
  price: z.number().positive(),
  volume: z.number().nonnegative(),
  side: z.enum(["ASK", "BID"]),
  ts: z.number().int(),
  seq: z.string().regex(/^\d+$/),
});

/** `YYYY-MM-DD` of the UTC day containing `ms`. */
export function utcDay(ms: number): string {
  return new Date(Math.floor(ms / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
}

/** The file of `market`'s trades on the UTC day containing `ms`. */
export function tradeFilePath(dir: string, market: string, ms: number): string {
  return `${dir.replace(/\/+$/, "")}/${market}/${utcDay(ms)}.ndjson.gz`;
}

function toLine(t: Trade): string {
  return JSON.stringify({
    market: t.market,
    price: t.price,
    volume: t.volume,
    side: t.side,
    ts: t.timestampMs,
    seq: t.sequentialId.toString(),
  });
}

/** What {@linkcode readTradeFile} found. */
export interface TradeFileContents {
  /** In file order (unsorted, may repeat). */
  trades: Trade[];
  /** Lines that could not be read: a torn last line, or a malformed one. */
  skipped: number;
}

/** Decodes `bytes` (gzip, possibly torn) into complete lines and the count of skipped ones. */
function decodeLines(bytes: Uint8Array): { lines: string[]; torn: boolean } {
  if (bytes.length === 0) return { lines: [], torn: false };
  let text: string;
  let torn = false;
  try {
    text = new TextDecoder().decode(gunzipSync(bytes));
  } catch {
    // Torn or corrupt tail: take what decodes.
    torn = true;
    try {
      text = new TextDecoder().decode(gunzipSync(bytes, { finishFlush: constants.Z_SYNC_FLUSH }));
    } catch {
      text = "";
    }
  }
  const parts = text.split("\n");
  const last = parts.pop() ?? "";
  if (last !== "") torn = true;
  return { lines: parts.filter((l) => l !== ""), torn };
}

/**
 * Reads one trade file; a missing file reads as empty.
 *
 * @example
 * ```ts ignore
 * const { trades, skipped } = await readTradeFile("data/trades/KRW-BTC/2026-12-01.ndjson.gz");
 * ```
 */
export async function readTradeFile(path: string): Promise<TradeFileContents> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { trades: [], skipped: 0 };
    throw err;
  }
  const { lines, torn } = decodeLines(bytes);
  const trades: Trade[] = [];
  let skipped = torn ? 1 : 0;
  for (const line of lines) {
    let parsed;
    try {
      parsed = LineSchema.safeParse(JSON.parse(line));
    } catch {
      parsed = null;
    }
    if (!parsed?.success) {
      skipped++;
      continue;
    }
    const l = parsed.data;
    trades.push({
      market: l.market,
      price: l.price,
      volume: l.volume,
      side: l.side,
      timestampMs: l.ts,
      sequentialId: BigInt(l.seq),
    });
  }
  return { trades, skipped };
}

/** Trades sorted by time then id, duplicates removed. */
export function sortUnique(trades: readonly Trade[]): Trade[] {
  const seen = new Set<string>();
  const out: Trade[] = [];
  for (const t of trades) {
    const k = tradeKey(t);
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(t);
  }
  return out.sort((a, b) =>
    a.timestampMs - b.timestampMs ||
    (a.sequentialId < b.sequentialId ? -1 : a.sequentialId > b.sequentialId ? 1 : 0)
  );
}

/**
 * Rewrites `path` with only its readable lines when its tail is torn (atomically: a temporary
 * file renamed over it), so that appending to it again is safe. Returns the lines dropped.
 */
export async function repairTradeFile(path: string): Promise<number> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw err;
  }
  const { lines, torn } = decodeLines(bytes);
  if (!torn) return 0;
  const tmp = `${path}.tmp`;
  await Deno.writeFile(
    tmp,
    gzipSync(new TextEncoder().encode(lines.map((l) => l + "\n").join(""))),
  );
  await Deno.rename(tmp, path);
  return 1;
}

/**
 * Appends `trades` (any markets, any days) to their files, one gzip member per file.
 *
 * @example
 * ```ts ignore
 * await appendTrades("data/trades", trades);
 * ```
 */
export async function appendTrades(dir: string, trades: readonly Trade[]): Promise<void> {
  const byPath = new Map<string, string[]>();
  for (const t of trades) {
    const path = tradeFilePath(dir, t.market, t.timestampMs);
    let lines = byPath.get(path);
    if (!lines) byPath.set(path, lines = []);
    lines.push(toLine(t));
  }
  for (const [path, lines] of byPath) {
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    const member = gzipSync(new TextEncoder().encode(lines.join("\n") + "\n"));
    await Deno.writeFile(path, member, { append: true });
  }
}

/** Options of {@linkcode TradeRecorder}. */
export interface TradeRecorderOptions {
  /** `DATA_DIR/trades`. */
  dir: string;
  /** How long trades are buffered before they are written. @default {1000} */
  flushIntervalMs?: number;
  /** Called when a write fails (the trades stay buffered for the next try). */
  onError?: (err: Error) => void;
  /** Trades kept while writes fail; beyond it the oldest are dropped (and reported). @default {1000000} */
  maxBuffered?: number;
}

/**
 * Buffers the trades the feed receives and appends them to their files every second.
 *
 * @example
 * ```ts ignore
 * const recorder = new TradeRecorder({ dir: "data/trades" });
 * recorder.record(trades);
 * await recorder.close();
 * ```
 */
export class TradeRecorder {
  readonly dir: string;
  readonly #intervalMs: number;
  readonly #onError: (err: Error) => void;
  readonly #maxBuffered: number;
  #buffer: Trade[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing: Promise<void> = Promise.resolve();
  /** Files checked (and repaired if torn) by this process. */
  #checked = new Set<string>();

  constructor(options: TradeRecorderOptions) {
    this.dir = options.dir;
    this.#intervalMs = options.flushIntervalMs ?? 1000;
    this.#onError = options.onError ?? (() => {});
    this.#maxBuffered = options.maxBuffered ?? 1_000_000;
  }

  /** Queues `trades` for writing. */
  record(trades: readonly Trade[]): void {
    if (trades.length === 0) return;
    for (const t of trades) this.#buffer.push(t);
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#intervalMs);
  }

  /** Writes what is buffered now. */
  flush(): Promise<void> {
    this.#writing = this.#writing.then(() => this.#write());
    return this.#writing;
  }

  async #write(): Promise<void> {
    const batch = this.#buffer;
    if (batch.length === 0) return;
    this.#buffer = [];
    try {
      for (const t of batch) {
        const path = tradeFilePath(this.dir, t.market, t.timestampMs);
        if (this.#checked.has(path)) continue;
        await repairTradeFile(path);
        this.#checked.add(path);
      }
      await appendTrades(this.dir, batch);
    } catch (err) {
      this.#buffer = [...batch, ...this.#buffer];
      this.#onError(err as Error);
      const excess = this.#buffer.length - this.#maxBuffered;
      if (excess > 0) {
        // The disk keeps failing: recording is best effort, trading must not run out of memory.
        this.#buffer = this.#buffer.slice(excess);
        this.#onError(new Error(`dropped ${excess} unrecorded trades (writes keep failing)`));
      }
    }
  }

  /** Stops the timer and writes what is left. */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}

/**
 * Final 1-second bars of `market` with `fromMs <= ts < toMs`, built from the recorded trades by
 * the feed's own {@linkcode BarAggregator}, a day file at a time, oldest first. Trades are sorted
 * and deduplicated first, so no trade is late; the last open bar is finalised at the end.
 *
 * @example
 * ```ts ignore
 * for await (const bars of barsFromTradeFiles("data/trades", "KRW-BTC", from, to)) {}
 * ```
 */
export async function* barsFromTradeFiles(
  dir: string,
  market: string,
  fromMs: number,
  toMs: number,
): AsyncGenerator<Bar[]> {
  const agg = new BarAggregator();
  const inside = (b: Bar) => b.ts >= fromMs && b.ts < toMs;
  for (let day = Math.floor(fromMs / DAY_MS) * DAY_MS; day < toMs; day += DAY_MS) {
    const { trades } = await readTradeFile(tradeFilePath(dir, market, day));
    const mine = sortUnique(
      trades.filter((t) => t.market === market && t.timestampMs >= fromMs && t.timestampMs < toMs),
    );
    const bars = agg.ingest(mine).final.filter(inside);
    if (bars.length > 0) yield bars;
  }
  const rest = agg.flushBefore(Number.MAX_SAFE_INTEGER).final.filter(inside);
  if (rest.length > 0) yield rest;
}
