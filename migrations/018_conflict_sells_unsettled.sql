-- A live sell whose identifier Upbit knows, but under an order that is not the one asked for
-- (state conflict, reason identifier_conflict), stays unsettled until a person has looked: it
-- may be the sell itself, judged foreign by a check that erred (a database clock ahead of
-- Upbit's), and then its coins are gone while the ledger still holds them. Treating it as
-- settled let the exit and the closer sell the same volume again, from the owner's coins.
-- A conflict buy is not held: its fills are not in the ledger, so nothing sells them.
CREATE OR REPLACE VIEW live_orders_unsettled AS
  SELECT a.id, a.symbol, a.side, a.state
  FROM upbit_order_attempts a
  LEFT JOIN lost_order_checks c ON c.attempt_id = a.id
  WHERE a.mode = 'live'
    AND (a.state IN ('pending', 'sent', 'unknown', 'open', 'partially_filled')
      OR (a.state = 'failed' AND a.reason = 'order_lost' AND c.resolved_at IS NULL)
      OR (a.state = 'conflict' AND a.side = 'ask'));
