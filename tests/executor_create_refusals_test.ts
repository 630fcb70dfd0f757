/**
 * Order creates refused in ways that leave the identifier used at Upbit, against the simulator:
 * a create refused with 429 (§3.3), whose identifier the simulator burns (§4.3: "a value is burnt
 * even if the create request failed"). upbot sends it again under the same identifier, meets the
 * "used" refusal, looks the identifier up, finds nothing, waits the landing wait and only then
 * moves to a fresh identifier: the entry is bought once, the exit sold once. The name of the "used"
 * refusal is not documented (§4.3 [?]): under another name (`duplicated_identifier_name`) the
 * re-send's refusal is resolved the same way, never taken as final.
 */
import assert from "node:assert/strict";
import { requestFlatten } from "../lib/control/trading_state.ts";
import { dec, formatDec } from "../lib/decimal.ts";
import { OrderPoller } from "../lib/execution/order_poller.ts";
import { ledgerPosition } from "../lib/execution/position_ledger.ts";
import { createLogger, setLogSink } from "../lib/log.ts";
import type { AttemptRow } from "../lib/store/order_attempts.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";
import { UpbitRest } from "../lib/upbit/rest.ts";
import { type SimulatorOptions, startSimulator } from "../sim/mod.ts";
import { dbTest, type TestDatabase } from "./_db.ts";
import { executorConfig, liveExecutor } from "./_live_orders.ts";
import { signedPost } from "./_sim_auth.ts";

const BTC = "KRW-BTC";
/** How long the executor waits before a fresh identifier (the landing wait, shortened). */
const ROTATION_WAIT_MS = 400;

/** One exchange call upbot made, as the wire saw it. */
interface WireEvent {
  atMs: number;
  kind: "create" | "lookup";
  identifier: string;
  status: number;
  /** The error name of a refusal. */
  name: string | null;
}

/** How the first create under an identifier `squeeze` picks is refused. */
type Squeeze = "429";

/**
 * A simulator, an Upbit client whose calls are recorded, and a live executor. The first create
 * under each identifier `squeeze` picks is refused with a real 429 of the simulator: its `order`
 * group is squeezed to one request a second (`rate_limit_factor`) and used up by another create
 * right before it, then set back.
 */
async function rig(
  db: TestDatabase,
  squeeze: (identifier: string) => Squeeze | null,
  simOptions: SimulatorOptions = {},
) {
  const sim = await startSimulator({ rate: 0, seed: 7, markets: [BTC], ...simOptions });
  const wire: WireEvent[] = [];
  const squeezed = new Set<string>();
  const record = async (kind: WireEvent["kind"], identifier: string, res: Response) => {
    let name: string | null = null;
    if (res.status >= 400) {
      try {
        name = (await res.clone().json()).error?.name ?? null;
      } catch {
        name = null;
      }
    }
    wire.push({ atMs: performance.now(), kind, identifier, status: res.status, name });
  };
  const fetchVia: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.pathname === "/v1/orders" && init?.method === "POST") {
      const identifier = JSON.parse(String(init.body)).identifier as string;
      const how = squeezed.has(identifier) ? null : squeeze(identifier);
      if (how === "429") {
        squeezed.add(identifier);
        sim.setFaults({ rate_limit_factor: 0.01 });
        try {
          const filler = await signedPost(sim.restUrl, "/v1/orders", sim, {
            market: BTC,
            side: "bid",
            ord_type: "price",
            price: "1000",
          });
          await filler.body?.cancel();
          const res = await fetch(input, init);
          await record("create", identifier, res);
          return res;
        } finally {
          sim.setFaults({ rate_limit_factor: 1 });
        }
      }
      const res = await fetch(input, init);
      await record("create", identifier, res);
      return res;
    }
    const res = await fetch(input, init);
    const looked = url.searchParams.get("identifier");
    if (url.pathname === "/v1/order" && init?.method === "GET" && looked !== null) {
      await record("lookup", looked, res);
    }
    return res;
  };
  const rest = new UpbitRest({
    baseUrl: sim.restUrl,
    accessKey: sim.accessKey,
    secretKey: sim.secretKey,
    timeoutMs: 1500,
    fetch: fetchVia,
  });
  const lines: string[] = [];
  const restore = setLogSink((line) => lines.push(line));
  const config = executorConfig(sim, "live");
  const ex = liveExecutor(db.sql, rest, config, createLogger("executor"), {
    settings: { maxOrdersPerMin: 600 },
    unknownSettleMs: 0,
    rotationWaitMs: ROTATION_WAIT_MS,
    retryBackoff: { baseMs: 20, maxMs: 100 },
  });
  await ex.start();
  const poller = new OrderPoller({
    sql: db.sql,
    rest,
    maxPolls: 50,
    log: createLogger("order_poller"),
  });
  const r = {
    sim,
    rest,
    ex,
    wire,
    /** Executor and poller passes (with short pauses) until `done()` or `rounds` run out. */
    async drive(done: () => Promise<boolean>, rounds = 80): Promise<void> {
      for (let i = 0; i < rounds; i++) {
        await ex.runOnce();
        await poller.pollOnce();
        if (await done()) return;
        await new Promise((res) => setTimeout(res, 30));
      }
      assert.fail(`not done after ${rounds} rounds:\n${lines.slice(-15).join("\n")}`);
    },
    async balance(currency: string): Promise<string> {
      const { data } = await rest.getAccounts();
      return formatDec(dec(data.find((a) => a.currency === currency)?.balance ?? "0"));
    },
    async [Symbol.asyncDispose]() {
      restore();
      rest.close();
      await sim.close();
    },
  };
  return r;
}

async function enter(db: TestDatabase, price = 140_500_000) {
  return await insertPaperEvent(db.sql, {
    action: "ENTER_LONG",
    market: BTC,
    ts: Date.now(),
    price,
    qty: 0.0001,
    fee: 1,
    ev: 0.1,
  }, "default");
}

async function exit(db: TestDatabase, price = 140_500_000) {
  return await insertPaperEvent(db.sql, {
    action: "EXIT_LONG",
    market: BTC,
    ts: Date.now(),
    price,
    qty: 0.0001,
    fee: 1,
    pnl: 0,
    holdSec: 5,
    reason: "EV_BAD",
    entryTs: Date.now() - 5000,
    entryPrice: price,
    ev: -0.3,
  }, "default");
}

async function rows(db: TestDatabase): Promise<AttemptRow[]> {
  return await db.sql<AttemptRow[]>`select * from upbit_order_attempts order by id`;
}

async function settled(db: TestDatabase): Promise<boolean> {
  const [row] = await db.sql`select count(*)::int as n from upbit_order_attempts
    where state in ('pending', 'sent', 'unknown', 'open', 'partially_filled')`;
  return row!.n === 0;
}

async function openVolume(db: TestDatabase): Promise<string> {
  return (await ledgerPosition(db.sql, BTC))?.openVolume ?? "0";
}

/**
 * The wire history of `first` (an identifier whose first create was refused with `refusal`):
 * upbot asked again under the same identifier, was told it is used, looked it up and found
 * nothing, and only then (and at least the landing wait after being told) sent under `rotated`,
 * once.
 */
function assertRotatedSafely(
  wire: WireEvent[],
  first: string,
  rotated: string,
  refusal: { status: number; name: string | null },
  usedName = "duplicated_identifier",
): void {
  const underFirst = wire.filter((e) => e.identifier === first);
  assert.deepEqual(
    underFirst.filter((e) => e.kind === "create").map((e) => [e.status, e.name]),
    [[refusal.status, refusal.name], [400, usedName]],
    `creates under ${first}`,
  );
  const used = underFirst.find((e) => e.kind === "create" && e.status === 400)!;
  const rotatedCreates = wire.filter((e) => e.kind === "create" && e.identifier === rotated);
  assert.deepEqual(rotatedCreates.map((e) => e.status), [201], `one create under ${rotated}`);
  const sentAt = rotatedCreates[0]!.atMs;
  const lookedUp = underFirst.filter((e) =>
    e.kind === "lookup" && e.atMs > used.atMs && e.atMs < sentAt
  );
  assert.ok(lookedUp.length > 0, `${first} looked up after Upbit said it is used`);
  assert.ok(lookedUp.every((e) => e.status === 404), "and nothing found under it");
  assert.ok(
    sentAt - used.atMs >= ROTATION_WAIT_MS,
    `the fresh identifier waited the landing wait (${Math.round(sentAt - used.atMs)} ms)`,
  );
}

dbTest(
  "429 on create: the entry and the exit are each sent again, told the identifier is used, looked up, then rotated after the landing wait; bought once, sold once",
  async (db) => {
    await using r = await rig(
      db,
      (id) => id.endsWith("-ENTER_LONG") || id.endsWith("-EXIT_LONG") ? "429" : null,
    );
    await enter(db);
    await r.drive(async () => {
      const state = (await rows(db))[0]?.state;
      return state === "filled" || state === "cancelled";
    });
    await exit(db);
    await r.drive(async () => await settled(db) && dec(await openVolume(db)) === 0n);
    const [entry, sale] = await rows(db);
    assert.match(entry!.identifier, /-ENTER_LONG-r1$/);
    assert.match(sale!.identifier, /-EXIT_LONG-r1$/);
    assert.equal(sale!.state, "filled");
    const base = (a: AttemptRow) => a.identifier.replace(/-r1$/, "");
    // The simulator writes a 429 in plain text by default (rate_refusal_format): no error name.
    const tooMany = { status: 429, name: null };
    assertRotatedSafely(r.wire, base(entry!), entry!.identifier, tooMany);
    assertRotatedSafely(r.wire, base(sale!), sale!.identifier, tooMany);
    const orders = r.sim.orders();
    assert.equal(orders.filter((o) => o.side === "bid").length, 1, "bought once");
    assert.equal(orders.filter((o) => o.side === "ask").length, 1, "sold once");
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest(
  "429 on a close: the closer's sell is sent again, told the identifier is used, looked up, then rotated after the landing wait; sold once",
  async (db) => {
    await using r = await rig(db, (id) => /-close-\d+$/.test(id) ? "429" : null);
    await enter(db);
    await r.drive(async () => {
      const state = (await rows(db))[0]?.state;
      return state === "filled" || state === "cancelled";
    });
    await requestFlatten(db.sql, { reason: "test", by: "test" });
    await r.drive(async () => await settled(db) && dec(await openVolume(db)) === 0n);
    const closes = (await rows(db)).filter((a) => a.action === "CLOSE");
    assert.equal(closes.length, 1, "one close");
    assert.equal(closes[0]!.state, "filled");
    assert.match(closes[0]!.identifier, /-close-\d+-r1$/);
    assertRotatedSafely(
      r.wire,
      closes[0]!.identifier.replace(/-r1$/, ""),
      closes[0]!.identifier,
      { status: 429, name: null },
    );
    assert.equal(r.sim.orders().filter((o) => o.side === "ask").length, 1, "sold once");
    assert.equal(await r.balance("BTC"), "0");
  },
);

dbTest(
  "the used-identifier refusal under another name (duplicated_identifier_name): a re-sent exit refused so is looked up, not final; rotated after the landing wait; sold once",
  async (db) => {
    const usedName = "identifier_already_used";
    await using r = await rig(
      db,
      (id) => id.endsWith("-EXIT_LONG") ? "429" : null,
      { faults: { duplicated_identifier_name: usedName } },
    );
    await enter(db);
    await r.drive(async () => {
      const state = (await rows(db))[0]?.state;
      return state === "filled" || state === "cancelled";
    });
    await exit(db);
    await r.drive(async () => await settled(db) && dec(await openVolume(db)) === 0n);
    const sale = (await rows(db))[1]!;
    assert.equal(sale.state, "filled");
    assert.match(sale.identifier, /-EXIT_LONG-r1$/);
    assertRotatedSafely(
      r.wire,
      sale.identifier.replace(/-r1$/, ""),
      sale.identifier,
      { status: 429, name: null },
      usedName,
    );
    assert.equal(r.sim.orders().filter((o) => o.side === "ask").length, 1, "sold once");
    assert.equal((await rows(db)).filter((a) => a.action === "CLOSE").length, 0, "no close");
    assert.equal(await r.balance("BTC"), "0");
  },
);
