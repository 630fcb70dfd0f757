-- A person's verdict on a live sell in conflict (`deno task conflict-order`,
-- lib/control/conflict_verdict.ts): whether the order Upbit holds under its identifier is the sell
-- itself. Until one is given, the sell holds its market's sells (migration 018).
--   not-ours: the sell never executed and the coins are still on the account: the hold is
--     released at once, and the closer sells the position again under a new identifier.
--   ours: the order-poller reads that order from Upbit (lib/execution/conflict_orders.ts) and,
--     once it is final and passes the minimal checks, writes its fills on the attempt, so the
--     ledger counts the sale; only then (adopted_at) is the hold released. One that fails them is
--     refused (refused says why) and stays held; a new verdict replaces a refused one.
-- A verdict never lifts the halt the conflict stored.
CREATE TABLE conflict_verdicts (
  attempt_id       BIGINT      PRIMARY KEY REFERENCES upbit_order_attempts (id),
  verdict          TEXT        NOT NULL CHECK (verdict IN ('ours', 'not-ours')),
  decided_by       TEXT        NOT NULL,
  decided_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_checked_at  TIMESTAMPTZ,   -- ours: when Upbit was last asked for the order
  refused          TEXT,          -- ours: why the order is not adopted all the same
  adopted_at       TIMESTAMPTZ    -- ours: when its fills were written on the attempt
);

-- As migration 018, except that a conflict sell with a verdict is released: not-ours at once,
-- ours once its fills are adopted.
CREATE OR REPLACE VIEW live_orders_unsettled AS
  SELECT a.id, a.symbol, a.side, a.state
  FROM upbit_order_attempts a
  LEFT JOIN lost_order_checks c ON c.attempt_id = a.id
  LEFT JOIN conflict_verdicts v ON v.attempt_id = a.id
  WHERE a.mode = 'live'
    AND (a.state IN ('pending', 'sent', 'unknown', 'open', 'partially_filled')
      OR (a.state = 'failed' AND a.reason = 'order_lost' AND c.resolved_at IS NULL)
      OR (a.state = 'conflict' AND a.side = 'ask'
        AND (v.verdict IS NULL OR (v.verdict = 'ours' AND v.adopted_at IS NULL))));
