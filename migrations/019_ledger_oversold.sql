-- `oversold`: volume upbot sold beyond what it bought (a defect or a race sold the owner's coins).
-- Left alone, the ledger's open volume stays below zero and the next live buy of the market nets
-- against it: upbot would then leave that much of its own purchase unsold, silently. The closer
-- records the shortfall once (lib/execution/position_ledger.ts recordOversold), with an alarm and
-- the market's entries halted, so the ledger is back at zero and the next buy is whole. It adds
-- to the open volume (every other adjustment subtracts). Costs and pnl are informational: the
-- sale of the owner's coins stays in `proceeds`.
ALTER TABLE position_adjustments DROP CONSTRAINT position_adjustments_kind_check;
ALTER TABLE position_adjustments ADD CONSTRAINT position_adjustments_kind_check
  CHECK (kind IN ('gone', 'dust', 'oversold'));

CREATE OR REPLACE VIEW position_movements AS
  SELECT symbol, ts, 0 AS source, id,
         CASE side WHEN 'bid' THEN 'buy' ELSE 'sell' END AS kind,
         executed_volume AS volume,
         CASE side WHEN 'bid' THEN executed_volume ELSE -executed_volume END AS delta,
         coalesce(avg_price * executed_volume, 0) AS funds,
         coalesce(paid_fee, 0) AS fee
  FROM upbit_order_attempts
  WHERE mode = 'live' AND executed_volume > 0
  UNION ALL
  SELECT symbol, ts, 1 AS source, id, kind, volume,
         CASE kind WHEN 'oversold' THEN volume ELSE -volume END AS delta, 0 AS funds, 0 AS fee
  FROM position_adjustments;

CREATE OR REPLACE VIEW position_ledger AS
  WITH ordered AS (
    SELECT m.*, row_number() OVER w AS rn, sum(delta) OVER w AS running
    FROM position_movements m
    WINDOW w AS (PARTITION BY symbol ORDER BY ts, source, id)
  ), last_flat AS (
    SELECT symbol, coalesce(max(rn) FILTER (WHERE running <= 0), 0) AS rn
    FROM ordered GROUP BY symbol
  ), sums AS (
    SELECT o.symbol,
           coalesce(sum(o.volume) FILTER (WHERE o.kind = 'buy'), 0) AS bought,
           coalesce(sum(o.volume) FILTER (WHERE o.kind = 'sell'), 0) AS sold,
           coalesce(sum(o.volume) FILTER (WHERE o.kind = 'gone'), 0) AS gone,
           coalesce(sum(o.volume) FILTER (WHERE o.kind = 'dust'), 0) AS dust,
           coalesce(sum(o.volume) FILTER (WHERE o.kind = 'oversold'), 0) AS oversold,
           coalesce(sum(o.funds + o.fee) FILTER (WHERE o.kind = 'buy'), 0) AS cost,
           coalesce(sum(o.funds - o.fee) FILTER (WHERE o.kind = 'sell'), 0) AS proceeds,
           sum(o.fee) AS fees,
           sum(o.funds + o.fee) FILTER (WHERE o.kind = 'buy' AND o.rn > f.rn) AS entry_cost,
           sum(o.volume) FILTER (WHERE o.kind = 'buy' AND o.rn > f.rn) AS entry_volume,
           max(o.ts) AS last_ts
    FROM ordered o JOIN last_flat f USING (symbol)
    GROUP BY o.symbol
  )
  SELECT symbol, bought, sold, gone, dust,
         bought - sold - gone - dust + oversold AS open_volume,
         cost, proceeds, fees,
         CASE WHEN bought - sold - gone - dust + oversold > 0
           THEN round(entry_cost / nullif(entry_volume, 0), 8) END AS avg_entry_price,
         round(proceeds - cost + CASE WHEN bought - sold - gone - dust + oversold > 0
           THEN (bought - sold - gone - dust + oversold)
             * coalesce(entry_cost / nullif(entry_volume, 0), 0)
           ELSE 0 END, 8) AS realised_pnl,
         last_ts,
         oversold
  FROM sums;
