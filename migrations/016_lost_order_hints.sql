-- A person's hint for a lost order (`deno task lost-order`, lib/control/lost_order_hint.ts): the
-- uuid they saw at Upbit for an order upbot gave up as `failed` / `order_lost`. The slow re-check
-- (lib/execution/lost_orders.ts) asks Upbit for it too, and adopts the order only when it is the
-- one upbot asked for; a hint is never adopted by itself. A newer hint replaces an older one.
ALTER TABLE lost_order_checks
  ADD COLUMN operator_uuid          TEXT,         -- the uuid given
  ADD COLUMN operator_hint_at       TIMESTAMPTZ,  -- when it was given (the check is due then)
  ADD COLUMN operator_hint_refused  TEXT;         -- why Upbit's order under it is not this one
