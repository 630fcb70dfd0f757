/**
 * @module Fills the recorded-trade files from Upbit's REST trade history
 * (`GET /v1/trades/ticks`), which serves the newest trade date and the seven before it
 * (`days_ago` 1-7, §6). Each date is paged from its newest trade back with `cursor`; after every
 * page the trades are appended to their file and the cursor is saved
 * (`<MARKET>/.fetch-<date>.json`), so an interrupted run resumes where it stopped and a finished
 * past date is not fetched again (today, not being over, is fetched again by every run; readers
 * drop the repeated trades). Requests go through {@linkcode UpbitRest}, whose rate limiter keeps
 * to the quotation `trade` group's limit.
 */
import { z } from "zod";
import type { Trade } from "../strategy/bars.ts";
import type { UpbitRest } from "../upbit/rest.ts";
import { appendTrades, utcDay } from "./trade_files.ts";

const DAY_MS = 86_400_000;
const PAGE = 500;
/** Upbit serves at most seven dates before the newest one. */
export const MAX_DAYS = 7;

const ProgressSchema = z.object({
  cursor: z.string().regex(/^\d+$/).nullable(),
  /** Oldest trade time fetched so far (epoch ms), for the progress display. */
  oldestTs: z.number().nullable(),
  trades: z.number().int(),
  done: z.boolean(),
});
type DateProgress = z.infer<typeof ProgressSchema>;

/** Options of {@linkcode fetchHistory}. */
export interface FetchHistoryOptions {
  rest: UpbitRest;
  /** `DATA_DIR/trades`. */
  dir: string;
  market: string;
  /** Whole UTC dates before today (1-7); today so far is fetched too. */
  days: number;
  /** The clock. @default {Date.now} */
  now?: () => number;
  /** Stop after this many requests (the run can be resumed). @default {Infinity} */
  maxRequests?: number;
  /** Called after every page: the date being fetched and how far back it is (0..1). */
  onProgress?: (p: { date: string; dateIndex: number; dates: number; fraction: number }) => void;
  signal?: AbortSignal;
}

/** What {@linkcode fetchHistory} did. */
export interface FetchHistoryResult {
  /** Dates covered, oldest first (`YYYY-MM-DD`). */
  dates: string[];
  /** Trades written by this run. */
  written: number;
  /** Dates found complete from an earlier run. */
  skipped: string[];
  /** False when `maxRequests` stopped the run early. */
  complete: boolean;
}

function progressPath(dir: string, market: string, date: string): string {
  return `${dir}/${market}/.fetch-${date}.json`;
}

async function loadProgress(path: string): Promise<DateProgress | null> {
  try {
    const parsed = ProgressSchema.safeParse(JSON.parse(await Deno.readTextFile(path)));
    return parsed.success ? parsed.data : null;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof SyntaxError) return null;
    throw err;
  }
}

async function saveProgress(path: string, p: DateProgress): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(p));
  await Deno.rename(`${path}.tmp`, path);
}

/**
 * Fetches `days` whole UTC dates before today and today so far, oldest date first.
 *
 * @throws {RangeError} when `days` is not 1-7; what `getTradesTicks` throws.
 * @example
 * ```ts ignore
 * await fetchHistory({ rest, dir: "data/trades", market: "KRW-BTC", days: 3 });
 * ```
 */
export async function fetchHistory(options: FetchHistoryOptions): Promise<FetchHistoryResult> {
  const { rest, market, days } = options;
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw new RangeError(`days must be a whole number from 1 to ${MAX_DAYS}: got ${days}`);
  }
  const dir = options.dir.replace(/\/+$/, "");
  const now = options.now ?? Date.now;
  const todayStart = Math.floor(now() / DAY_MS) * DAY_MS;
  const dates = Array.from({ length: days + 1 }, (_, i) => todayStart - (days - i) * DAY_MS);
  const result: FetchHistoryResult = {
    dates: dates.map(utcDay),
    written: 0,
    skipped: [],
    complete: true,
  };
  let requests = 0;
  await Deno.mkdir(`${dir}/${market}`, { recursive: true });
  for (const [index, dateStart] of dates.entries()) {
    const date = utcDay(dateStart);
    const path = progressPath(dir, market, date);
    const progress = await loadProgress(path) ??
      { cursor: null, oldestTs: null, trades: 0, done: false };
    if (progress.done) {
      result.skipped.push(date);
      continue;
    }
    while (!progress.done) {
      if (requests >= (options.maxRequests ?? Infinity)) {
        result.complete = false;
        return result;
      }
      // Counted from the newest date by the clock now, so a run across 00:00 UTC keeps asking
      // for the same date; the answer's own date is checked below.
      const daysAgo = Math.round((Math.floor(now() / DAY_MS) * DAY_MS - dateStart) / DAY_MS);
      if (daysAgo > MAX_DAYS) {
        throw new Error(`${date} is now beyond Upbit's ${MAX_DAYS}-day trade history`);
      }
      requests++;
      const { data } = await rest.getTradesTicks({
        market,
        count: PAGE,
        ...(progress.cursor === null ? {} : { cursor: progress.cursor }),
        ...(daysAgo === 0 ? {} : { daysAgo }),
      }, { signal: options.signal });
      const mine = data.filter((t) => t.trade_date_utc === date);
      if (data.length > 0 && mine.length === 0) {
        throw new Error(
          `asked for ${date} but Upbit answered ${data[0]!.trade_date_utc}; run again to resume`,
        );
      }
      const trades: Trade[] = mine.map((t) => ({
        market,
        price: t.trade_price,
        volume: t.trade_volume,
        side: t.ask_bid,
        timestampMs: t.timestamp,
        sequentialId: t.sequential_id,
      }));
      await appendTrades(dir, trades);
      result.written += trades.length;
      progress.trades += trades.length;
      for (const t of trades) {
        if (progress.oldestTs === null || t.timestampMs < progress.oldestTs) {
          progress.oldestTs = t.timestampMs;
        }
      }
      const last = data.at(-1);
      if (data.length < PAGE || !last) progress.done = true;
      else progress.cursor = last.sequential_id.toString();
      if (progress.done && dateStart + DAY_MS > now()) {
        // Today is not over: a later run must fetch it again (readers drop the repeated trades),
        // and it must never be taken for a complete date once it is in the past.
        await Deno.remove(path).catch(() => {});
      } else {
        await saveProgress(path, progress);
      }
      const dateEnd = Math.min(dateStart + DAY_MS, now());
      options.onProgress?.({
        date,
        dateIndex: index,
        dates: dates.length,
        fraction: progress.done || progress.oldestTs === null
          ? 1
          : (dateEnd - progress.oldestTs) / (dateEnd - dateStart),
      });
    }
  }
  return result;
}
