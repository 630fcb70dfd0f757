/**
 * @module The simulator's state file (`--state FILE`): accounts, every order with its fills, the
 * used identifiers and the uuid stream's position, so a restarted simulator is the same exchange.
 * Written atomically (a temporary file in the same directory, then a rename); a file that cannot be
 * read as a state is an error, never a silent fresh start. Market history is not kept.
 */
import { z } from "zod";
import { type Dec, formatDec, parseDec } from "./_decimal.ts";
import type { Account, Order } from "./_engine.ts";

/** A state file that exists but cannot be used. */
export class StateFileError extends Error {
  override name = "StateFileError";
}

/** What the engine keeps across restarts. */
export interface EngineState {
  accounts: Account[];
  /** Oldest first. */
  orders: Order[];
  usedIdentifiers: string[];
}

/** Everything the state file holds. */
export interface SimState extends EngineState {
  /** Seed of the order / trade uuid stream and how many uuids it has drawn. */
  uuidSeed: number;
  uuidsDrawn: number;
}

const FORMAT_VERSION = 1;
const DecText = z.string().regex(/^-?\d+(\.\d+)?$/, "not a decimal string");

const FillJson = z.strictObject({
  uuid: z.string(),
  price: DecText,
  volume: DecText,
  funds: DecText,
  fee: DecText,
  isMaker: z.boolean(),
  timestampMs: z.number().int(),
});

const OrderJson = z.strictObject({
  uuid: z.string().min(1),
  identifier: z.string().nullable(),
  market: z.string(),
  quote: z.string(),
  base: z.string(),
  side: z.enum(["bid", "ask"]),
  ordType: z.enum(["limit", "price", "market", "best"]),
  timeInForce: z.enum(["ioc", "fok", "post_only"]).nullable(),
  smpType: z.string().nullable(),
  price: DecText.nullable(),
  volume: DecText.nullable(),
  reservedFunds: DecText,
  reservedFee: DecText,
  restPrice: DecText,
  executedVolume: DecText,
  executedFunds: DecText,
  paidFee: DecText,
  preventedVolume: DecText,
  preventedFunds: DecText,
  preventedFee: DecText,
  state: z.enum(["wait", "done", "cancel", "prevented"]),
  cancelPending: z.boolean(),
  createdAtMs: z.number().int(),
  fills: z.array(FillJson),
});

const AccountJson = z.strictObject({
  currency: z.string().min(1),
  balance: DecText,
  locked: DecText,
  avgBuyPrice: DecText,
});

const StateJson = z.strictObject({
  version: z.literal(FORMAT_VERSION),
  uuidSeed: z.number().int(),
  uuidsDrawn: z.number().int().min(0),
  accounts: z.array(AccountJson),
  orders: z.array(OrderJson),
  usedIdentifiers: z.array(z.string()),
});

const DEC_FIELDS = [
  "reservedFunds",
  "reservedFee",
  "restPrice",
  "executedVolume",
  "executedFunds",
  "paidFee",
  "preventedVolume",
  "preventedFunds",
  "preventedFee",
] as const;

const toDec = (text: string): Dec => parseDec(text)!;

function orderToJson(order: Order): z.input<typeof OrderJson> {
  const json: Record<string, unknown> = {
    uuid: order.uuid,
    identifier: order.identifier,
    market: order.market,
    quote: order.quote,
    base: order.base,
    side: order.side,
    ordType: order.ordType,
    timeInForce: order.timeInForce,
    smpType: order.smpType,
    price: order.price === null ? null : formatDec(order.price),
    volume: order.volume === null ? null : formatDec(order.volume),
    state: order.state,
    cancelPending: order.cancelPending,
    createdAtMs: order.createdAtMs,
    fills: order.fills.map((f) => ({
      uuid: f.uuid,
      price: formatDec(f.price),
      volume: formatDec(f.volume),
      funds: formatDec(f.funds),
      fee: formatDec(f.fee),
      isMaker: f.isMaker,
      timestampMs: f.timestampMs,
    })),
  };
  for (const field of DEC_FIELDS) json[field] = formatDec(order[field]);
  return json as z.input<typeof OrderJson>;
}

function orderFromJson(json: z.output<typeof OrderJson>): Order {
  const decs = Object.fromEntries(DEC_FIELDS.map((f) => [f, toDec(json[f])])) as Record<
    (typeof DEC_FIELDS)[number],
    Dec
  >;
  return {
    ...json,
    ...decs,
    price: json.price === null ? null : toDec(json.price),
    volume: json.volume === null ? null : toDec(json.volume),
    fills: json.fills.map((f) => ({
      ...f,
      price: toDec(f.price),
      volume: toDec(f.volume),
      funds: toDec(f.funds),
      fee: toDec(f.fee),
    })),
    real: true,
  };
}

/** The state as file text (JSON, decimals as exact strings). */
export function stateToText(state: SimState): string {
  return JSON.stringify({
    version: FORMAT_VERSION,
    uuidSeed: state.uuidSeed,
    uuidsDrawn: state.uuidsDrawn,
    accounts: state.accounts.map((a) => ({
      currency: a.currency,
      balance: formatDec(a.balance),
      locked: formatDec(a.locked),
      avgBuyPrice: formatDec(a.avgBuyPrice),
    })),
    orders: state.orders.map(orderToJson),
    usedIdentifiers: state.usedIdentifiers,
  });
}

/** Parses state file text; throws {@linkcode StateFileError} naming `path` when it is not a state. */
export function stateFromText(text: string, path: string): SimState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StateFileError(
      `state file ${path} is corrupt (not JSON: ${err instanceof Error ? err.message : err}); ` +
        "move it away to start fresh",
    );
  }
  const parsed = StateJson.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new StateFileError(
      `state file ${path} is corrupt (${issue?.path.join(".") || "state"}: ${issue?.message}); ` +
        "move it away to start fresh",
    );
  }
  const v = parsed.data;
  return {
    uuidSeed: v.uuidSeed,
    uuidsDrawn: v.uuidsDrawn,
    accounts: v.accounts.map((a) => ({
      currency: a.currency,
      balance: toDec(a.balance),
      locked: toDec(a.locked),
      avgBuyPrice: toDec(a.avgBuyPrice),
    })),
    orders: v.orders.map(orderFromJson),
    usedIdentifiers: v.usedIdentifiers,
  };
}

/** Reads the state at `path`; undefined when there is no file (a fresh start). */
export function loadState(path: string): SimState | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new StateFileError(
      `cannot read state file ${path}: ${err instanceof Error ? err.message : err}`,
    );
  }
  return stateFromText(text, path);
}

/**
 * Writes the state atomically: a temporary file beside `path` (same directory, so the rename
 * cannot cross file systems), then a rename over `path`. A killed process leaves the old or the new
 * state, never a torn file.
 */
export function saveState(path: string, state: SimState): void {
  const slash = path.lastIndexOf("/");
  const dir = slash >= 0 ? path.slice(0, slash + 1) : "";
  const temp = `${dir}.${path.slice(slash + 1)}.${Deno.pid}.tmp`;
  const file = Deno.openSync(temp, { write: true, create: true, truncate: true });
  try {
    const bytes = new TextEncoder().encode(stateToText(state));
    let written = 0;
    while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
    // No fsync: the file must survive the simulator being killed (the page cache does), not a
    // power cut; an fsync per request would slow every test that keeps a state file.
  } finally {
    file.close();
  }
  Deno.renameSync(temp, path);
}
