/**
 * @module Reconciliation again after an outage (issue 11): a live upbot on the simulator whose
 * private WebSocket is refused for longer than `RECONCILE_OUTAGE_LIMIT_SEC` closes the
 * reconciliation gate with its reason (status, /readyz), sends nothing while the gate is closed,
 * and places its next order only after a reconciliation that started after the outage completed.
 *
 * The private stream is refused by a WebSocket relay between upbot and the simulator (the public
 * stream passes through); the exchange's REST is made to fail meanwhile so that the closed gate
 * stays closed long enough to be seen, as it would while Upbit is unreachable.
 *
 * The signals are written by the test (`insertPaperEvent`, as the evaluator writes them): an entry
 * once the start-up reconciliation opened the gate, its exit while the gate is closed. The
 * evaluator runs but enters nothing (`EVAL_ENTRY_EV_MIN` at its maximum), so no signal of its own
 * competes with them; the executor follows them as it follows the evaluator's.
 */
import assert from "node:assert/strict";
import { testBackends } from "./_db.ts";
import { startDisposableSimulator, startUpbotRig } from "./_fault_rig.ts";
import { LIVE_ENV } from "./_upbot_rig.ts";
import { insertPaperEvent } from "../lib/store/paper_trades.ts";

/** A WebSocket relay to `upstream` (the simulator's `ws://…/websocket/v1`) that can refuse `/private`. */
function startWsRelay(upstream: string) {
  let refusePrivate = false;
  const sockets = new Set<{ socket: WebSocket; upstream: WebSocket; isPrivate: boolean }>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const isPrivate = new URL(req.url).pathname.endsWith("/private");
    if (isPrivate && refusePrivate) {
      return new Response("relay refuses the private stream", { status: 503 });
    }
    const auth = req.headers.get("authorization");
    const { socket, response } = Deno.upgradeWebSocket(req);
    const up = new WebSocket(
      upstream + (isPrivate ? "/private" : ""),
      auth ? { headers: { Authorization: auth } } : undefined,
    );
    up.binaryType = "arraybuffer";
    const pair = { socket, upstream: up, isPrivate };
    sockets.add(pair);
    const waiting: (string | ArrayBuffer)[] = [];
    socket.onmessage = (e) => {
      if (up.readyState === WebSocket.OPEN) up.send(e.data);
      else waiting.push(e.data);
    };
    up.onopen = () => {
      for (const m of waiting.splice(0)) up.send(m);
    };
    up.onmessage = (e) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(e.data);
    };
    const closeBoth = () => {
      sockets.delete(pair);
      for (const s of [socket, up]) {
        if (s.readyState === WebSocket.OPEN || s.readyState === WebSocket.CONNECTING) s.close();
      }
    };
    socket.onclose = closeBoth;
    up.onclose = closeBoth;
    socket.onerror = () => {};
    up.onerror = () => {};
    return response;
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}/websocket/v1`,
    /** Refuses (503) new private connections and closes the open ones; false lets them in again. */
    refusePrivate(refuse: boolean) {
      refusePrivate = refuse;
      if (!refuse) return;
      for (const p of [...sockets]) if (p.isPrivate) p.socket.close();
    },
    async [Symbol.asyncDispose]() {
      for (const p of [...sockets]) p.socket.close();
      await server.shutdown();
    },
  };
}

interface StatusGate {
  open: boolean;
  reason: string | null;
  since: number | null;
}

for (const backend of testBackends()) {
  Deno.test(
    `live: the private stream lost past the limit closes the reconciliation gate; nothing is sent until it reconciled again [${backend}]`,
    async () => {
      await using sim = await startDisposableSimulator({
        seed: 7,
        markets: ["KRW-BTC"],
        rate: 200,
      });
      await using relay = startWsRelay(sim.wsUrl);
      await using rig = await startUpbotRig({
        backend,
        sim: { restUrl: sim.restUrl, wsUrl: relay.url },
        markets: ["KRW-BTC"],
        env: {
          ...LIVE_ENV,
          RECONCILE_OUTAGE_LIMIT_SEC: "2",
          RECONCILE_RETRY_SEC: "1",
          // No balance poll during the test: only the private stream's outage is watched here.
          ACCOUNT_POLL_INTERVAL_SEC: "3600",
          // The test writes the signals: the evaluator enters on nothing (EV is a percent).
          EVAL_ENTRY_EV_MIN: "100",
        },
      });
      const { sql } = rig;
      const status = async () => {
        const res = await fetch(`${rig.upbot.httpUrl}/api/status`);
        assert.equal(res.status, 200);
        return (await res.json()).reconciliation as {
          gate: StatusGate;
          last_completed: { id: number; ts: number } | null;
        };
      };
      const readyz = async () => {
        const res = await fetch(`${rig.upbot.httpUrl}/readyz`);
        return { status: res.status, body: await res.json() as { problems: string[] } };
      };

      /** The last price of KRW-BTC the feed stored (the simulator's public stream). */
      const lastPrice = async () => {
        const [bar] = await sql<{ close: string }[]>`
          select close::text from market_1s where symbol = 'KRW-BTC' order by ts desc limit 1`;
        return bar ? Number(bar.close) : null;
      };
      let entry: { ts: number; price: number; qty: number } | undefined;

      // The live start reconciled, and live orders go out (the entry written once it had).
      await rig.until("the start-up reconciliation and a live order", async () => {
        const r = await status();
        if (!r.gate.open || r.last_completed === null) return false;
        if (!entry) {
          const price = await lastPrice();
          if (price === null) return false;
          const signal = { ts: Date.now(), price, qty: Math.floor((10_000 / price) * 1e8) / 1e8 };
          await insertPaperEvent(sql, {
            action: "ENTER_LONG",
            market: "KRW-BTC",
            ...signal,
            fee: 5,
            ev: 0.1,
          }, "default");
          entry = signal;
        }
        return await rig.count("upbit_order_attempts", "mode = 'live' and uuid is not null") > 0;
      }, 90_000);

      // Upbit unreachable: REST fails and the private stream is refused.
      sim.setFaults({ error_rate: 1 });
      relay.refusePrivate(true);
      let closed: StatusGate | undefined;
      await rig.until("the gate closed for the private stream", async () => {
        const r = await status();
        if (!r.gate.open) closed = r.gate;
        return !r.gate.open;
      }, 30_000);
      assert.match(
        closed!.reason!,
        /^private stream lost for \d+ s since \S+: reconcile before any live order$/,
      );
      const ready = await readyz();
      assert.equal(ready.status, 503);
      assert.ok(
        ready.body.problems.some((p) =>
          p.startsWith("reconciliation gate closed (private stream lost for ")
        ),
        JSON.stringify(ready.body),
      );
      const closedAt = new Date(closed!.since!);

      // The executor met the closed gate (its reconciliation failed): from here nothing is sent.
      await rig.until("a failed reconciliation after the gate closed", async () =>
        await rig.count(
          "reconciliations",
          `completed_at is null and error_msg is not null and started_at > '${closedAt.toISOString()}'`,
        ) > 0, 30_000);
      const [before] = await sql<{ attempt: number; paper: number }[]>`
        select coalesce((select max(id) from upbit_order_attempts), 0)::int as attempt,
               coalesce((select max(id) from paper_trades), 0)::int as paper`;
      // A new signal arrives, and the executor tries to reconcile again after it: still refused.
      await insertPaperEvent(sql, {
        action: "EXIT_LONG",
        market: "KRW-BTC",
        ts: Date.now(),
        price: await lastPrice() ?? entry!.price,
        qty: entry!.qty,
        fee: 5,
        pnl: 0,
        holdSec: Math.round((Date.now() - entry!.ts) / 1000),
        reason: "EV_BAD",
        entryTs: entry!.ts,
        entryPrice: entry!.price,
        ev: -0.3,
      }, "default");
      let signalAt = "";
      await rig.until("a paper trade while the gate is closed", async () => {
        const [row] = await sql<{ ts: Date }[]>`
          select ts from paper_trades where id > ${before!.paper} order by id limit 1`;
        if (row) signalAt = row.ts.toISOString();
        return row !== undefined;
      }, 60_000);
      await rig.until("a failed reconciliation after that signal", async () =>
        await rig.count(
          "reconciliations",
          `completed_at is null and error_msg is not null and started_at > '${signalAt}'`,
        ) > 0, 30_000);
      assert.equal(
        await rig.count("upbit_order_attempts", `id > ${before!.attempt}`),
        0,
        "no order attempt while the reconciliation gate is closed",
      );
      assert.equal((await status()).gate.open, false);

      // Upbit back: a reconciliation that started after the outage opens the gate, then orders go.
      sim.setFaults({ error_rate: 0 });
      relay.refusePrivate(false);
      await rig.until("the gate open again", async () => (await status()).gate.open, 60_000);
      const after = await status();
      assert.ok(after.last_completed !== null);
      const [run] = await sql<{ started_at: Date; completed_at: Date }[]>`
        select started_at, completed_at from reconciliations where id = ${after.last_completed.id}`;
      assert.ok(run!.started_at > closedAt, "the reconciliation started after the gate closed");
      await rig.until("a live order after the outage", async () =>
        await rig.count(
          "upbit_order_attempts",
          `id > ${before!.attempt} and mode = 'live' and uuid is not null`,
        ) > 0, 90_000);
      const [first] = await sql<{ ts: Date }[]>`
        select ts from upbit_order_attempts where id > ${before!.attempt} order by id limit 1`;
      assert.ok(
        first!.ts >= run!.completed_at,
        `the first attempt after the outage (${
          first!.ts.toISOString()
        }) follows the reconciliation (${run!.completed_at.toISOString()})`,
      );
      assert.equal((await readyz()).status, 200);
    },
  );
}
