/**
 * @module The simulated exchange's order engine: order validation (§4.3, §9.1 order), balances and
 * locks, fees and the fields of the §4.5 order object, taking liquidity from the market's book on
 * creation, resting limit orders that fill when the market's trades cross them, and cancellation.
 *
 * Matching rules (documented choices; Upbit does not publish its engine):
 * - A crossing limit order (or a `price` / `market` / `best` order) is a taker: it walks the
 *   market's current top-30 book at the resting prices (price improvement). The market's book is
 *   not depleted by our takes; within one order each level is used once.
 * - A resting limit order is a maker and fills at its own price when a trade prints at a crossing
 *   price (bid: trade price <= limit; ask: >= limit). The trade's volume is shared among our resting
 *   orders best price first, then oldest first; each order takes at most the volume left.
 * - `best` orders are limit orders at the best opposite price: they only take the first level.
 * - Market orders (`price` buys, `market` sells) larger than the visible book are refused at
 *   validation (§8.2), so a market order that is accepted finds the whole of its size in the book.
 * - Self-trade prevention (changed 2026-11-09): a new order meets the account's own resting
 *   orders of the other side in price order with the book (own first at an equal price), and its
 *   `smp_type` decides (absent = `cancel_maker`): `none` trades with its own order, `cancel_maker`
 *   cancels the resting order, `cancel_taker` cancels the new order's remainder, `reduce` takes the
 *   overlap off both. An order cancelled that way ends in state `prevented` (final; what it
 *   executed before stays executed) with `prevented_volume` / `prevented_locked` set. Resting orders
 *   filled by market trades never meet each other (the market's trades are other users').
 */
import {
  type Dec,
  decimalPlaces,
  divTrunc,
  formatDec,
  maxDec,
  minDec,
  mul,
  parseDec,
  truncDec,
  ZERO,
} from "./_decimal.ts";
import { isOnTickGrid, maxTotal, minTotal } from "./_price_rules.ts";
import { RestingSide } from "./_resting.ts";
import {
  type Faults,
  type MarketView,
  ok,
  refused,
  type SimError,
  type SimOrderSummary,
  type SimResult,
  type SimTrade,
} from "./contract.ts";
import type { EngineState } from "./_state_file.ts";

/** Fee rate of every market (§8.1: 0.05 % maker and taker). */
export const FEE_RATE: Dec = parseDec("0.0005")!;
/** Fee rate as Upbit prints it in `/v1/orders/chance`. */
export const FEE_RATE_TEXT = "0.0005";
/** Quantities carry at most 8 decimals (§8.2). */
const VOLUME_PLACES = 8;

const SIDES = ["bid", "ask"] as const;
const ORD_TYPES = ["limit", "price", "market", "best"] as const;
const TIMES_IN_FORCE = ["ioc", "fok", "post_only"] as const;
const SMP_TYPES = ["none", "cancel_maker", "cancel_taker", "reduce"] as const;

/** `bid` (buy) or `ask` (sell). */
export type Side = (typeof SIDES)[number];
/** §4.3 order types. */
export type OrdType = (typeof ORD_TYPES)[number];
/** §4.3 time in force. */
export type TimeInForce = (typeof TIMES_IN_FORCE)[number];
/**
 * States an order of the simulator can be in (no `watch`: stop orders are app-only). `prevented`
 * is final: self-trade prevention cancelled (the rest of) the order.
 */
export type OrderState = "wait" | "done" | "cancel" | "prevented";

/** One fill of an order. */
export interface Fill {
  uuid: string;
  price: Dec;
  volume: Dec;
  funds: Dec;
  fee: Dec;
  isMaker: boolean;
  timestampMs: number;
}

/** An order held by the engine. */
export interface Order {
  readonly uuid: string;
  readonly identifier: string | null;
  readonly market: string;
  readonly quote: string;
  readonly base: string;
  readonly side: Side;
  readonly ordType: OrdType;
  readonly timeInForce: TimeInForce | null;
  readonly smpType: string | null;
  /** As requested: unit price (limit) or quote total (`price`, `best` bid); null otherwise. */
  readonly price: Dec | null;
  /** Requested quantity (null for `price` and `best` bid orders). */
  readonly volume: Dec | null;
  /** Quote reserved for purchases, fee excluded (bids); 0 for asks. */
  readonly reservedFunds: Dec;
  readonly reservedFee: Dec;
  /** Limit price while resting. */
  restPrice: Dec;
  executedVolume: Dec;
  executedFunds: Dec;
  paidFee: Dec;
  /** Quantity self-trade prevention took off the order (§4.5 `prevented_volume`). */
  preventedVolume: Dec;
  /** Quote funds (fee excluded) SMP released from a bid; 0 for asks. */
  preventedFunds: Dec;
  /** Reserved fee SMP released from a bid with its funds; 0 for asks. */
  preventedFee: Dec;
  state: OrderState;
  /** A cancel was accepted and completes right after the answer. */
  cancelPending: boolean;
  readonly createdAtMs: number;
  readonly fills: Fill[];
  /** False for `POST /v1/orders/test` answers, which are never stored. */
  readonly real: boolean;
}

/** One currency of the account. */
export interface Account {
  currency: string;
  balance: Dec;
  locked: Dec;
  avgBuyPrice: Dec;
}

/** What the engine reports to the private WebSocket. */
export type EngineEvent =
  | { kind: "order"; order: Order; fill: Fill | null; timestampMs: number }
  | { kind: "asset"; currencies: string[]; timestampMs: number };

/** A validated order request, ready to place. */
export interface OrderRequest {
  market: string;
  quote: string;
  base: string;
  side: Side;
  ordType: OrdType;
  price: Dec | null;
  volume: Dec | null;
  timeInForce: TimeInForce | null;
  smpType: SmpType;
  identifier: string | null;
}

const TWO: Dec = parseDec(2)!;

/** Options of {@linkcode Engine}. */
export interface EngineOptions {
  market: MarketView;
  krw: number;
  /**
   * Coins held at start by market (`KRW-BTC` → volume, at most 8 decimals, above 0), each with the
   * market's current price as `avg_buy_price`. Throws `RangeError` on an unknown market or volume.
   */
  holdings?: Record<string, string | number>;
  /**
   * Coins of markets no longer listed, by market, held at start (no ticker, no orders; listed by
   * `/v1/accounts`). Throws `RangeError` on a simulated market or a bad volume.
   */
  delisted?: Record<string, string | number>;
  faults: () => Faults;
  /** Source of order and trade uuids (seeded). */
  nextUuid: () => string;
  /** Wall clock in ms. @default {Date.now} */
  now?: () => number;
  /** State to resume (`--state`); `krw` and `holdings` are then ignored. */
  restore?: EngineState;
  /** Called after every change of accounts, orders or used identifiers (to persist them). */
  onChange?: () => void;
}

/** Something a new order can meet: a level of the market's book, or an own resting order. */
type Liquidity =
  | { price: Dec; size: Dec; own: null }
  | { price: Dec; size: Dec; own: Order };

/** §4.3 `smp_type` values since 2026-11-09 (`none` turns prevention off). */
export type SmpType = (typeof SMP_TYPES)[number];

/** How a create request is treated. */
export type CreateMode = "real" | "test";

/** Reads an optional scalar field of a JSON body as text (numbers accepted); null when absent. */
function textField(body: Record<string, unknown>, name: string): SimResult<string | null> {
  const value = body[name];
  if (value === undefined || value === null) return ok(null);
  if (typeof value === "string") return ok(value);
  if (typeof value === "number" && Number.isFinite(value)) return ok(String(value));
  return refused(400, "invalid_parameter", `잘못된 파라미터: ${name}`);
}

function positiveDec(text: string | null, name: string): SimResult<Dec | null> {
  if (text === null) return ok(null);
  const value = parseDec(text);
  if (value === undefined || value <= 0n) {
    return refused(400, "invalid_parameter", `잘못된 파라미터: ${name}`);
  }
  return ok(value);
}

const oneOf = (allowed: readonly string[]) => (value: unknown) =>
  typeof value === "string" && allowed.includes(value);
const absentOr = (valid: (value: unknown) => boolean) => (value: unknown) =>
  value === undefined || value === null || valid(value);

/**
 * The field checks of a create body after the market's, in the §9.1 order: the first that fails
 * answers.
 */
const FIELD_RULES: readonly {
  field: string;
  valid: (value: unknown) => boolean;
  error: SimError;
}[] = [
  {
    field: "side",
    valid: oneOf(SIDES),
    error: {
      status: 400,
      name: "validation_error",
      message: "side is missing, side does not have a valid value",
    },
  },
  {
    field: "ord_type",
    valid: oneOf(ORD_TYPES),
    error: {
      status: 400,
      name: "validation_error",
      message: "ord_type is missing, ord_type does not have a valid value",
    },
  },
  {
    field: "identifier",
    valid: absentOr((v) => typeof v === "string" && v.length <= 64),
    error: {
      status: 400,
      name: "invalid_parameter",
      message: "identifier는 64자 이하의 문자열이어야 합니다.",
    },
  },
  {
    field: "time_in_force",
    valid: absentOr(oneOf(TIMES_IN_FORCE)),
    error: {
      status: 400,
      name: "invalid_time_in_force",
      message: "주문조건을 다시 확인해 주세요.",
    },
  },
  {
    field: "smp_type",
    valid: absentOr(oneOf(SMP_TYPES)),
    error: {
      status: 400,
      name: "validation_error",
      message: "smp_type does not have a valid value",
    },
  },
];

/**
 * §4.3 table: the sides each ord_type allows, its time_in_force values (null = none given), and
 * which of price / volume it needs by side (a field not needed must be absent).
 */
const ORDER_SHAPES: Record<
  OrdType,
  {
    sides: readonly Side[];
    timeInForce: readonly (TimeInForce | null)[];
    needsPrice: Record<Side, boolean>;
    needsVolume: Record<Side, boolean>;
  }
> = {
  limit: {
    sides: SIDES,
    timeInForce: [null, ...TIMES_IN_FORCE],
    needsPrice: { bid: true, ask: true },
    needsVolume: { bid: true, ask: true },
  },
  price: {
    sides: ["bid"],
    timeInForce: [null],
    needsPrice: { bid: true, ask: true },
    needsVolume: { bid: false, ask: false },
  },
  market: {
    sides: ["ask"],
    timeInForce: [null],
    needsPrice: { bid: false, ask: false },
    needsVolume: { bid: true, ask: true },
  },
  best: {
    sides: SIDES,
    timeInForce: ["ioc", "fok"],
    needsPrice: { bid: true, ask: false },
    needsVolume: { bid: false, ask: true },
  },
};

/** The order engine of one simulated user. */
export class Engine {
  readonly #market: MarketView;
  readonly #faults: () => Faults;
  readonly #nextUuid: () => string;
  readonly #now: () => number;
  readonly #orders = new Map<string, Order>();
  readonly #byIdentifier = new Map<string, Order>();
  /** Every identifier ever sent with a create, test creates included (burnt even when it failed). */
  readonly #usedIdentifiers = new Set<string>();
  readonly #accounts = new Map<string, Account>();
  readonly #resting = new Map<string, { bids: RestingSide<Order>; asks: RestingSide<Order> }>();
  readonly #listeners = new Set<(event: EngineEvent) => void>();
  readonly #unsubscribe: () => void;
  readonly #onChange: () => void;
  /** Timers of market orders whose fill is delayed (`market_fill_delay_ms`), by uuid. */
  readonly #delayedFills = new Map<string, ReturnType<typeof setTimeout>>();

  /** Creates the engine and subscribes to the market's trades. */
  constructor(options: EngineOptions) {
    this.#market = options.market;
    this.#faults = options.faults;
    this.#nextUuid = options.nextUuid;
    this.#now = options.now ?? Date.now;
    this.#onChange = options.onChange ?? (() => {});
    if (options.restore) this.#restore(options.restore);
    else this.#start(options);
    this.#unsubscribe = this.#market.onTrade((trade) => this.#onTrade(trade));
  }

  /** Resumes a saved state: orders, their indexes, balances and burnt identifiers. */
  #restore(state: EngineState): void {
    for (const account of state.accounts) this.#accounts.set(account.currency, { ...account });
    this.#account("KRW");
    for (const identifier of state.usedIdentifiers) this.#usedIdentifiers.add(identifier);
    const pendingCancels: Order[] = [];
    for (const order of state.orders) {
      this.#orders.set(order.uuid, order);
      if (order.identifier !== null) this.#byIdentifier.set(order.identifier, order);
      if (order.state !== "wait") continue;
      // A cancel accepted before the stop completes now, as it would have a moment later.
      if (order.cancelPending) pendingCancels.push(order);
      else if (order.ordType === "limit") this.#rest(order);
      // A market order whose delayed fill the stop interrupted (`market_fill_delay_ms`) takes
      // the rest of its fill now.
      else if (order.ordType === "price" || order.ordType === "market") {
        this.#delayFill(order, 0);
      }
    }
    for (const order of pendingCancels) this.#finish(order, "cancel");
  }

  /** A fresh account: `krw` and the owner's coins. */
  #start(options: EngineOptions): void {
    this.#account("KRW").balance = parseDec(options.krw) ?? ZERO;
    for (const [market, amount] of Object.entries(options.holdings ?? {})) {
      if (!this.hasMarket(market)) {
        throw new RangeError(`balances: ${market} is not a simulated market`);
      }
      const volume = parseDec(amount);
      if (volume === undefined || volume <= 0n || decimalPlaces(volume) > VOLUME_PLACES) {
        throw new RangeError(`balances: ${market} needs a volume above 0 with at most 8 decimals`);
      }
      const account = this.#account(market.split("-")[1]!);
      account.balance += volume;
      account.avgBuyPrice = parseDec(this.#market.lastPrice(market)) ?? ZERO;
    }
    for (const [market, amount] of Object.entries(options.delisted ?? {})) {
      const volume = parseDec(amount);
      if (this.hasMarket(market) || !/^[A-Z0-9]+-[A-Z0-9]+$/.test(market)) {
        throw new RangeError(
          `delisted: ${market} must be a market code the simulator does not list`,
        );
      }
      if (volume === undefined || volume <= 0n || decimalPlaces(volume) > VOLUME_PLACES) {
        throw new RangeError(`delisted: ${market} needs a volume above 0 with at most 8 decimals`);
      }
      this.#account(market.split("-")[1]!).balance += volume;
    }
  }

  /** What `--state` keeps: accounts, every order (oldest first) and the used identifiers. */
  exportState(): EngineState {
    return {
      accounts: [...this.#accounts.values()],
      orders: [...this.#orders.values()],
      usedIdentifiers: [...this.#usedIdentifiers],
    };
  }

  /** Stops listening to the market. */
  close(): void {
    this.#unsubscribe();
    this.#listeners.clear();
    for (const timer of this.#delayedFills.values()) clearTimeout(timer);
    this.#delayedFills.clear();
  }

  /** Registers an event listener; returns the function that removes it. */
  subscribe(listener: (event: EngineEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(event: EngineEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  #emitAssets(currencies: string[]): void {
    this.#onChange();
    if (this.#listeners.size > 0) {
      this.#emit({ kind: "asset", currencies, timestampMs: this.#now() });
    }
  }

  #emitOrder(order: Order, fill: Fill | null): void {
    if (order.real) this.#onChange();
    if (this.#listeners.size > 0) {
      this.#emit({ kind: "order", order, fill, timestampMs: this.#now() });
    }
  }

  #account(currency: string): Account {
    let account = this.#accounts.get(currency);
    if (!account) {
      account = { currency, balance: ZERO, locked: ZERO, avgBuyPrice: ZERO };
      this.#accounts.set(currency, account);
    }
    return account;
  }

  /** KRW plus every currency with a balance or a lock. */
  accounts(): Account[] {
    const list = [this.#account("KRW")];
    for (const account of this.#accounts.values()) {
      if (account.currency !== "KRW" && (account.balance > 0n || account.locked > 0n)) {
        list.push(account);
      }
    }
    return list;
  }

  /** The account of `currency` (zeros when never touched). */
  account(currency: string): Account {
    return this.#accounts.get(currency) ??
      { currency, balance: ZERO, locked: ZERO, avgBuyPrice: ZERO };
  }

  /** True when `market` is simulated. */
  hasMarket(market: string): boolean {
    return this.#market.markets().includes(market);
  }

  /**
   * True when `market` takes no orders (`market_offline`): the faults mark it offline, or its
   * listing state (§7.4 `market_state`) is not `ACTIVE`. The reference does not say in words that a
   * PREVIEW or DELISTED market refuses orders; §5.2's "not tradable" is read as covering them (the
   * least kind reading).
   */
  isOffline(market: string): boolean {
    return this.#faults().offline_markets.includes(market) ||
      this.#market.listingState(market) !== "ACTIVE";
  }

  /** Every real order, oldest first. */
  allOrders(): Order[] {
    return [...this.#orders.values()];
  }

  /** A real order by uuid. */
  byUuid(uuid: string): Order | undefined {
    return this.#orders.get(uuid);
  }

  /** A real order by identifier. */
  byIdentifier(identifier: string): Order | undefined {
    return this.#byIdentifier.get(identifier);
  }

  /** Summaries for `GET /_sim/orders`. */
  summaries(): SimOrderSummary[] {
    return this.allOrders().map((o) => ({
      uuid: o.uuid,
      identifier: o.identifier,
      market: o.market,
      side: o.side,
      ord_type: o.ordType,
      state: o.state,
      executed_volume: formatDec(o.executedVolume),
    }));
  }

  /**
   * Validates a create body in the §9.1 order: market exists / online → side, ord_type and
   * time_in_force combinations → tick grid → min / max total → visible book depth (market orders)
   * → balance → identifier uniqueness.
   * `extraAvailable` adds funds about to be released (cancel_and_new).
   */
  validate(
    body: Record<string, unknown>,
    extraAvailable: Dec = ZERO,
    ownReservation = false,
  ): SimResult<OrderRequest> {
    const market = body.market;
    if (market === undefined || market === null || market === "") {
      return refused(400, "validation_error", "market is missing");
    }
    if (typeof market !== "string") return refused(400, "validation_error", "market is invalid");
    if (!this.hasMarket(market)) {
      return refused(400, "notfoundmarket", `다음 마켓에 없는 종목입니다: ${market}`);
    }
    if (this.isOffline(market)) {
      return refused(403, "market_offline", "시스템 점검 중입니다. 잠시 후 다시 시도해 주세요.");
    }
    const [quote = "", base = ""] = market.split("-");
    for (const rule of FIELD_RULES) {
      if (!rule.valid(body[rule.field])) return { ok: false, error: { ...rule.error } };
    }
    const side = body.side as Side;
    const ordType = body.ord_type as OrdType;
    const identifier = (body.identifier ?? null) as string | null;
    const timeInForce = (body.time_in_force ?? null) as TimeInForce | null;
    const smpRaw = (body.smp_type ?? null) as SmpType | null;
    const priceText = textField(body, "price");
    if (!priceText.ok) return priceText;
    const volumeText = textField(body, "volume");
    if (!volumeText.ok) return volumeText;
    const inconsistent = () =>
      refused(400, `create_${side}_error`, "주문 파라미터가 주문 유형과 맞지 않습니다.");

    const shape = ORDER_SHAPES[ordType];
    if (!shape.sides.includes(side)) return inconsistent();
    if (!shape.timeInForce.includes(timeInForce)) {
      return refused(400, "invalid_time_in_force", "주문조건을 다시 확인해 주세요.");
    }
    // Since 2026-11-09 post_only is accepted only with smp_type `none` or without one.
    if (timeInForce === "post_only" && smpRaw !== null && smpRaw !== "none") {
      return refused(400, "invalid_parameter", "post_only는 smp_type과 함께 사용할 수 없습니다.");
    }
    // An order without smp_type is treated (and reported) as `cancel_maker` since 2026-11-09, a
    // post_only one included: the change says absent means cancel_maker, and a post_only order
    // never takes, so prevention never applies to it either way.
    const smpType: SmpType = smpRaw ?? "cancel_maker";
    const needsPrice = shape.needsPrice[side];
    const needsVolume = shape.needsVolume[side];
    if (needsPrice && priceText.value === null) {
      return refused(400, "validation_error", "price is missing");
    }
    if (needsVolume && volumeText.value === null) {
      return refused(400, "validation_error", "volume is missing");
    }
    if (!needsPrice && priceText.value !== null) return inconsistent();
    if (!needsVolume && volumeText.value !== null) return inconsistent();
    const priceResult = positiveDec(priceText.value, "price");
    if (!priceResult.ok) return priceResult;
    const volumeResult = positiveDec(volumeText.value, "volume");
    if (!volumeResult.ok) return volumeResult;
    const price = priceResult.value;
    const volume = volumeResult.value;
    if (volume !== null && decimalPlaces(volume) > VOLUME_PLACES) {
      return refused(
        400,
        `invalid_volume_${side}`,
        "주문수량 단위를 잘못 입력하셨습니다. 확인 후 시도해주세요.",
      );
    }
    if (price !== null && decimalPlaces(price) > VOLUME_PLACES) {
      return refused(
        400,
        `invalid_price_${side}`,
        "주문가격 단위를 잘못 입력하셨습니다. 확인 후 시도해주세요.",
      );
    }
    if (ordType === "limit" && !isOnTickGrid(quote, price!)) {
      return refused(
        400,
        `invalid_price_${side}`,
        "주문가격 단위를 잘못 입력하셨습니다. 확인 후 시도해주세요.",
      );
    }

    // Order total in the quote currency; sells without a price use the last trade price.
    const total = ordType === "limit"
      ? mul(price!, volume!)
      : price !== null
      ? price
      : mul(volume!, parseDec(this.#market.lastPrice(market)) ?? ZERO);
    if (total < minTotal(quote)) {
      return refused(
        400,
        `under_min_total_${side}`,
        `최소주문금액 이상으로 주문해주세요. (${formatDec(minTotal(quote))} ${quote})`,
      );
    }
    const max = maxTotal(quote);
    if (max !== undefined && total > max) {
      return refused(
        400,
        `over_krw_funds_${side}`,
        `최대 주문 가능 금액 ${formatDec(max)} ${quote} 보다 작은 주문을 입력해 주세요.`,
      );
    }

    // §8.2: a market order larger than the visible book (the market's top 30 levels) is refused,
    // not partly filled. The error name is undocumented [?]; this one is inferred.
    if (
      (ordType === "price" && price! > this.#visibleDepth(market, "bid")) ||
      (ordType === "market" && volume! > this.#visibleDepth(market, "ask"))
    ) {
      return refused(
        400,
        `insufficient_liquidity_${side}`,
        "호가창의 주문 가능 잔량을 초과한 시장가 주문입니다.",
      );
    }

    if (side === "bid") {
      const need = total + mul(total, FEE_RATE);
      if (this.account(quote).balance + extraAvailable < need) {
        return refused(400, "insufficient_funds_bid", `주문가능한 금액(${quote})이 부족합니다.`);
      }
    } else if (this.account(base).balance + extraAvailable < volume!) {
      return refused(400, "insufficient_funds_ask", `주문가능한 금액(${base})이 부족합니다.`);
    }

    // §4.3: the error name for a reused identifier is not documented; two third-party clients
    // map it to `duplicated_identifier` [?], which we answer with 400 (the
    // `duplicated_identifier_name` fault picks another).
    if (
      typeof identifier === "string" && this.#usedIdentifiers.has(identifier) && !ownReservation
    ) {
      return refused(
        400,
        this.#faults().duplicated_identifier_name,
        "이미 사용된 identifier입니다.",
      );
    }
    return ok({
      market,
      quote,
      base,
      side,
      ordType,
      price,
      volume,
      timeInForce,
      smpType,
      identifier,
    });
  }

  /**
   * What the visible book offers a market order of `side` (§8.2): the notional of the asks for a
   * buy, the summed size of the bids for a sell (sizes truncated to 8 dp as the walk takes them).
   * The account's own resting orders are not counted: the least kind reading, and under the default
   * `cancel_maker` they never fill a new order anyway.
   */
  #visibleDepth(market: string, side: Side): Dec {
    const book = this.#market.book(market);
    let depth = ZERO;
    for (const level of side === "bid" ? book.asks : book.bids) {
      const price = parseDec(level.price);
      if (price === undefined || price <= 0n) continue;
      depth += side === "bid" ? mul(price, volumeOf(level.size)) : volumeOf(level.size);
    }
    return depth;
  }

  /**
   * `POST /v1/orders` and `POST /v1/orders/test`. A create burns its identifier whatever the
   * outcome; a test create validates identically but stores, locks and fills nothing. Whether a
   * test create burns its identifier is undocumented (§4.4 [?]): it does here, the least kind
   * reading. Returns the order as accepted (state `wait`) and, for real orders, the order itself
   * (already matched against the book). `ownReservation`: this request took its identifier with
   * {@linkcode reserveIdentifier} when it arrived.
   */
  create(
    body: Record<string, unknown>,
    mode: CreateMode,
    ownReservation = false,
  ): SimResult<Order> {
    const identifier = body.identifier;
    try {
      const request = this.validate(body, ZERO, ownReservation && mode === "real");
      if (!request.ok) return request;
      if (mode === "test") return ok(this.#newOrder(request.value, false));
      return ok(this.place(request.value));
    } finally {
      if (typeof identifier === "string") this.burnIdentifier(identifier);
    }
  }

  /** A fresh order uuid from the seeded stream. */
  newUuid(): string {
    return this.#nextUuid();
  }

  /**
   * Takes `identifier` for a create that arrived and is processed later (`create_delay_ms`): from
   * now on any other request under it is refused as used, while the order itself appears only when
   * the create is processed. False when the identifier is already used.
   */
  reserveIdentifier(identifier: string): boolean {
    if (this.#usedIdentifiers.has(identifier)) return false;
    this.burnIdentifier(identifier);
    return true;
  }

  /** Burns an identifier (cancel_and_new's `new_identifier`). */
  burnIdentifier(identifier: string): void {
    if (this.#usedIdentifiers.has(identifier)) return;
    this.#usedIdentifiers.add(identifier);
    this.#onChange();
  }

  #newOrder(request: OrderRequest, real: boolean, uuid = this.#nextUuid()): Order {
    const { side, ordType, price, volume } = request;
    const reservedFunds = side === "bid"
      ? (ordType === "limit" ? mul(price!, volume!) : price!)
      : ZERO;
    // Bids reserve the fee on the funds; limit asks report the fee of their nominal total;
    // market / best asks reserve nothing (§4.5).
    const reservedFee = side === "bid"
      ? mul(reservedFunds, FEE_RATE)
      : ordType === "limit"
      ? mul(mul(price!, volume!), FEE_RATE)
      : ZERO;
    return {
      uuid,
      identifier: request.identifier,
      market: request.market,
      quote: request.quote,
      base: request.base,
      side,
      ordType,
      timeInForce: request.timeInForce,
      smpType: request.smpType,
      price,
      volume,
      reservedFunds,
      reservedFee,
      restPrice: ordType === "limit" ? price! : ZERO,
      executedVolume: ZERO,
      executedFunds: ZERO,
      paidFee: ZERO,
      preventedVolume: ZERO,
      preventedFunds: ZERO,
      preventedFee: ZERO,
      state: "wait",
      cancelPending: false,
      createdAtMs: this.#now(),
      fills: [],
      real,
    };
  }

  /**
   * Places a validated order: locks funds, stores it, takes liquidity, rests or finishes it.
   * Returns a copy of the order as accepted (the answer of `POST /v1/orders`).
   */
  place(request: OrderRequest, uuid?: string): Order {
    const order = this.#newOrder(request, true, uuid);
    const lockCurrency = order.side === "bid" ? order.quote : order.base;
    const lockAmount = order.side === "bid"
      ? order.reservedFunds + order.reservedFee
      : order.volume!;
    const account = this.#account(lockCurrency);
    account.balance -= lockAmount;
    account.locked += lockAmount;
    this.#orders.set(order.uuid, order);
    if (order.identifier !== null) this.#byIdentifier.set(order.identifier, order);
    const accepted = snapshot(order);
    this.#emitOrder(order, null);
    this.#emitAssets([lockCurrency]);
    this.#take(order);
    return accepted;
  }

  /**
   * What a new order on `order`'s side can meet, best price first: the market's book levels and
   * the account's own resting orders of the other side. At equal prices the own order comes first
   * (the stricter choice: prevention applies rather than the synthetic book filling first).
   */
  #liquidity(order: Order): Liquidity[] {
    const book = this.#market.book(order.market);
    const levels = order.side === "bid" ? book.asks : book.bids;
    const list: Liquidity[] = [];
    for (const level of levels) {
      const price = parseDec(level.price);
      if (price === undefined || price <= 0n) continue;
      list.push({ price, size: volumeOf(level.size), own: null });
    }
    const better = order.side === "bid" ? (a: Dec, b: Dec) => a < b : (a: Dec, b: Dec) => a > b;
    // Own orders beyond the visible book's last level are left out: the real book holds more
    // liquidity before them (and Upbit refuses market orders larger than the visible book, §8.2).
    const worst = list.at(-1)?.price;
    const resting = this.#resting.get(order.market);
    const own = order.side === "bid" ? resting?.asks : resting?.bids;
    for (const level of own?.levels ?? []) {
      if (worst !== undefined && better(worst, level.price)) break;
      for (const maker of level.orders) list.push({ price: level.price, size: ZERO, own: maker });
    }
    return list.sort((a, b) =>
      a.price === b.price ? (a.own ? 0 : 1) - (b.own ? 0 : 1) : better(a.price, b.price) ? -1 : 1
    );
  }

  /** Takes liquidity on creation (see module doc). */
  #take(order: Order): void {
    const all = this.#liquidity(order);
    const now = this.#now();
    const smp = order.smpType ?? "cancel_maker";
    // What a fill-or-kill can count on: the book, and its own orders only when SMP is off (with
    // SMP on they never trade with it).
    const fillable = (source: Liquidity) =>
      source.own === null ? source.size : smp === "none" ? remainingVolume(source.own) : ZERO;
    switch (order.ordType) {
      case "limit": {
        const limit = order.price!;
        const crossing = all.filter((s) =>
          order.side === "bid" ? s.price <= limit : s.price >= limit
        );
        if (order.timeInForce === "post_only" && crossing.length > 0) {
          return this.#finish(order, "cancel");
        }
        if (order.timeInForce === "fok") {
          let available = ZERO;
          for (const source of crossing) available += fillable(source);
          if (available < order.volume!) return this.#finish(order, "cancel");
        }
        this.#walk(order, crossing, now);
        if (order.state !== "wait") return;
        if (remainingVolume(order) <= 0n) return this.#finish(order, "done");
        if (order.timeInForce === "ioc" || order.timeInForce === "fok") {
          return this.#finish(order, "cancel");
        }
        return this.#rest(order);
      }
      case "price":
      case "market": {
        const delayMs = this.#faults().market_fill_delay_ms;
        if (delayMs > 0) {
          // `market_fill_delay_ms`: half of the order (its funds for a `price` buy, its volume for
          // a `market` sell) trades now, the rest after the delay; meanwhile the order is `wait`
          // with that partial fill.
          const half = order.volume === null
            ? { funds: divTrunc(order.reservedFunds, TWO, VOLUME_PLACES) }
            : { volume: divTrunc(order.volume, TWO, VOLUME_PLACES) };
          this.#walk(order, all, now, half);
          if (order.state === "wait") this.#delayFill(order, delayMs);
          return;
        }
        this.#walk(order, all, now);
        return this.#finishTaker(order);
      }
      case "best": {
        const first = all[0];
        if (!first) return this.#finish(order, "cancel");
        if (order.timeInForce === "fok") {
          const wanted = order.side === "bid"
            ? divTrunc(order.reservedFunds, first.price, VOLUME_PLACES)
            : order.volume!;
          if (wanted === ZERO || wanted > fillable(first)) return this.#finish(order, "cancel");
        }
        this.#walk(order, [first], now);
        return this.#finishTaker(order);
      }
    }
  }

  /**
   * After `delayMs`, the rest of a delayed market order's fill: it walks the book as it is then and
   * ends (unless a cancel or self-trade prevention ended it meanwhile).
   */
  #delayFill(order: Order, delayMs: number): void {
    const timer = setTimeout(() => {
      this.#delayedFills.delete(order.uuid);
      if (order.state !== "wait" || order.cancelPending) return;
      this.#walk(order, this.#liquidity(order), this.#now());
      this.#finishTaker(order);
      this.#onChange();
    }, delayMs);
    this.#delayedFills.set(order.uuid, timer);
  }

  /** Ends a `price` / `market` / `best` order after its walk: done when all of it traded. */
  #finishTaker(order: Order): void {
    if (order.state !== "wait") return;
    const left = order.volume === null ? fundsLeft(order) : remainingVolume(order);
    this.#finish(order, left === ZERO ? "done" : "cancel");
  }

  /**
   * Walks `sources` best first: takes the book's levels (quantities truncated to 8 dp) and meets
   * the account's own resting orders under the taker's `smp_type` (the taker's type decides,
   * §4.3): `none` trades with it; `cancel_maker` cancels the resting order (state `prevented`) and
   * goes on; `cancel_taker` cancels the rest of the new order (state `prevented`); `reduce` takes
   * the overlap off both and goes on while the new order has quantity left.
   */
  #walk(
    order: Order,
    sources: Liquidity[],
    now: number,
    upTo?: { funds?: Dec; volume?: Dec },
  ): void {
    for (const source of sources) {
      if (order.state !== "wait") return;
      const want = order.volume === null
        ? divTrunc(fundsLeft(order), source.price, VOLUME_PLACES)
        : remainingVolume(order);
      if (want <= 0n) return;
      // `upTo`: what this walk may trade at most (a delayed market order's first part).
      const cap = upTo?.volume !== undefined
        ? upTo.volume - order.executedVolume
        : upTo?.funds !== undefined
        ? divTrunc(upTo.funds - order.executedFunds, source.price, VOLUME_PLACES)
        : want;
      if (cap <= 0n) return;
      const maker = source.own;
      if (maker === null) {
        const v = minDec(minDec(want, source.size), cap);
        if (v > 0n) this.#fill(order, source.price, v, false, now);
        continue;
      }
      if (maker.state !== "wait" || maker.cancelPending) continue;
      const overlap = minDec(want, remainingVolume(maker));
      if (overlap <= 0n) continue;
      switch (order.smpType ?? "cancel_maker") {
        case "none":
          this.#fill(order, source.price, overlap, false, now);
          this.#fill(maker, maker.restPrice, overlap, true, now);
          if (remainingVolume(maker) <= 0n) this.#finish(maker, "done");
          break;
        case "cancel_taker":
          // Inferred: the whole remainder counts as prevented (at the price where it met its own
          // order, for a funds order), and the order ends `prevented` whatever it executed before.
          this.#prevent(order, want, source.price, true);
          this.#finish(order, "prevented");
          return;
        case "reduce":
          this.#prevent(order, overlap, source.price);
          this.#prevent(maker, overlap, maker.restPrice);
          if (remainingVolume(maker) <= 0n) this.#finish(maker, "prevented");
          if (order.volume === null ? fundsLeft(order) <= 0n : remainingVolume(order) <= 0n) {
            this.#finish(order, "prevented");
            return;
          }
          break;
        default: // cancel_maker
          this.#prevent(maker, remainingVolume(maker), maker.restPrice);
          this.#finish(maker, "prevented");
      }
    }
  }

  /**
   * Takes `volume` off an order by self-trade prevention and releases what it locked for it: the
   * quantity (asks), or its funds at the order's own price (limit bids) or at `price` (funds bids),
   * with their share of the reserved fee; `whole` (a bid's whole remainder) releases all its funds.
   */
  #prevent(order: Order, volume: Dec, price: Dec, whole = false): void {
    const currency = order.side === "bid" ? order.quote : order.base;
    let release = volume;
    order.preventedVolume += volume;
    if (order.side === "bid") {
      const funds = whole ? fundsLeft(order) : minDec(
        order.ordType === "limit" ? mul(order.price!, volume) : mul(price, volume),
        fundsLeft(order),
      );
      const fee = whole ? remainingFee(order) : minDec(mul(funds, FEE_RATE), remainingFee(order));
      order.preventedFunds += funds;
      order.preventedFee += fee;
      release = funds + fee;
    }
    const account = this.#account(currency);
    account.locked -= release;
    account.balance += release;
    this.#emitOrder(order, null);
    this.#emitAssets([currency]);
  }

  #restingOf(market: string) {
    let resting = this.#resting.get(market);
    if (!resting) {
      resting = { bids: new RestingSide<Order>(true), asks: new RestingSide<Order>(false) };
      this.#resting.set(market, resting);
    }
    return resting;
  }

  #rest(order: Order): void {
    const resting = this.#restingOf(order.market);
    (order.side === "bid" ? resting.bids : resting.asks).add(
      order,
      Number(formatDec(order.restPrice)),
    );
  }

  #unrest(order: Order): void {
    if (order.ordType !== "limit") return;
    const resting = this.#resting.get(order.market);
    if (!resting) return;
    (order.side === "bid" ? resting.bids : resting.asks).remove(order);
  }

  /** Applies one fill to the order and the balances. */
  #fill(order: Order, price: Dec, volume: Dec, isMaker: boolean, timestampMs: number): void {
    const funds = mul(price, volume);
    const fee = mul(funds, FEE_RATE);
    const quote = this.#account(order.quote);
    const base = this.#account(order.base);
    if (order.side === "bid") {
      const held = base.balance + base.locked;
      base.avgBuyPrice = divTrunc(mul(base.avgBuyPrice, held) + funds, held + volume, 8);
      quote.locked -= funds + fee;
      base.balance += volume;
    } else {
      base.locked -= volume;
      quote.balance += funds - fee;
      if (base.balance + base.locked === ZERO) base.avgBuyPrice = ZERO;
    }
    order.executedVolume += volume;
    order.executedFunds += funds;
    order.paidFee += fee;
    const fill: Fill = { uuid: this.#nextUuid(), price, volume, funds, fee, isMaker, timestampMs };
    order.fills.push(fill);
    this.#emitOrder(order, fill);
    this.#emitAssets([order.quote, order.base]);
  }

  /** Ends an order: releases what it still locks and reports its final state. */
  #finish(order: Order, state: "done" | "cancel" | "prevented"): void {
    if (order.state !== "wait") return;
    this.#unrest(order);
    order.state = state;
    order.cancelPending = false;
    const release = lockedOf(order);
    if (release > 0n) {
      const account = this.#account(order.side === "bid" ? order.quote : order.base);
      account.locked -= release;
      account.balance += release;
    }
    this.#emitOrder(order, null);
    if (release > 0n) this.#emitAssets([order.side === "bid" ? order.quote : order.base]);
  }

  /**
   * Accepts a cancel: the order stops matching now, the answer shows it as it was (state `wait`),
   * and the cancel completes in a microtask, i.e. before the caller's next step (§4.10).
   */
  requestCancel(order: Order, then?: () => void): SimResult<Order> {
    // §4.10: the names for "already done / cancelled" are undocumented [?]; `done_order` is seen
    // in third-party bot code, `canceled_order` follows the same pattern.
    if (order.state === "done") return refused(400, "done_order", "이미 체결된 주문입니다.");
    if (order.state === "cancel" || order.state === "prevented" || order.cancelPending) {
      return refused(400, "canceled_order", "이미 취소된 주문입니다.");
    }
    if (this.isOffline(order.market)) {
      return refused(403, "market_offline", "시스템 점검 중입니다. 잠시 후 다시 시도해 주세요.");
    }
    const answer = snapshot(order);
    order.cancelPending = true;
    this.#onChange();
    this.#unrest(order);
    queueMicrotask(() => {
      this.#finish(order, "cancel");
      then?.();
    });
    return ok(answer);
  }

  /** Fills resting orders crossed by a printed trade (O(crossed orders)). */
  #onTrade(trade: SimTrade): void {
    const resting = this.#resting.get(trade.market);
    if (!resting) return;
    const bids = resting.bids.levels;
    if (bids.length > 0 && bids[0]!.priceNum >= trade.price) {
      this.#fillResting(bids, (n) => n >= trade.price, trade);
    }
    const asks = resting.asks.levels;
    if (asks.length > 0 && asks[0]!.priceNum <= trade.price) {
      this.#fillResting(asks, (n) => n <= trade.price, trade);
    }
  }

  #fillResting(
    levels: { priceNum: number; orders: Order[] }[],
    crossed: (priceNum: number) => boolean,
    trade: SimTrade,
  ): void {
    let left = volumeOf(trade.volume);
    while (left > 0n) {
      const level = levels[0];
      if (!level || !crossed(level.priceNum)) return;
      const order = level.orders[0]!;
      const v = minDec(remainingVolume(order), left);
      this.#fill(order, order.restPrice, v, true, trade.timestampMs);
      left -= v;
      if (remainingVolume(order) <= 0n) this.#finish(order, "done");
    }
  }
}

/** A number volume (book size, trade volume) as an exact 8-dp quantity. */
function volumeOf(size: number): Dec {
  return maxDec(ZERO, truncDec(parseDec(size) ?? ZERO, VOLUME_PLACES));
}

/** Quantity of a volume order neither filled nor taken off by self-trade prevention. */
export function remainingVolume(order: Order): Dec {
  return order.volume === null ? ZERO : order.volume - order.executedVolume - order.preventedVolume;
}

/** Reserved funds of a bid neither spent nor released by self-trade prevention. */
function fundsLeft(order: Order): Dec {
  return order.reservedFunds - order.executedFunds - order.preventedFunds;
}

/**
 * Reserved fee neither charged nor released by self-trade prevention (never negative: asks may
 * pay more than their nominal fee).
 */
export function remainingFee(order: Order): Dec {
  return maxDec(ZERO, order.reservedFee - order.paidFee - order.preventedFee);
}

/** §4.5 `locked`: bids = unspent funds + remaining fee; asks = unfilled quantity. */
export function lockedOf(order: Order): Dec {
  return order.side === "bid" ? fundsLeft(order) + remainingFee(order) : remainingVolume(order);
}

/**
 * §4.5 `prevented_locked`: what self-trade prevention released: quote funds for bids (fee
 * excluded, as in Upbit's myOrder example where it equals `prevented_volume` × price), quantity for
 * asks.
 */
export function preventedLocked(order: Order): Dec {
  return order.side === "bid" ? order.preventedFunds : order.preventedVolume;
}

/** A frozen copy of the order as it is now (answers show the order at acceptance time). */
export function snapshot(order: Order): Order {
  return { ...order, fills: [...order.fills] };
}
