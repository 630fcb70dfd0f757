-- Live orders whose outcome is not final, one row per attempt: not sent yet or waiting to be
-- re-sent (pending), on its way (sent), answer lost (unknown), held by Upbit (open,
-- partially_filled): every state of lib/execution/order_state.ts that is not terminal
-- (tests/closer_inputs_test.ts checks the two agree). An order Upbit gave a uuid and then lost
-- (failed / order_lost) stays here until the lost-order check finds it again: it may have filled.
-- The one definition the position closer (what it waits for) and a resume during a flatten (what
-- is left to close) both read.
CREATE VIEW live_orders_unsettled AS
  SELECT a.id, a.symbol, a.side, a.state
  FROM upbit_order_attempts a
  LEFT JOIN lost_order_checks c ON c.attempt_id = a.id
  WHERE a.mode = 'live'
    AND (a.state IN ('pending', 'sent', 'unknown', 'open', 'partially_filled')
      OR (a.state = 'failed' AND a.reason = 'order_lost' AND c.resolved_at IS NULL));
