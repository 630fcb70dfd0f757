-- The live position ledger: what upbot owns on the exchange, per market, built from the fills of
-- its own live orders. It is the source of truth for what upbot must sell (a live position is an
-- obligation) and the cap on what it may sell (never the owner's own coins).
--
-- Why a view and not a table kept up to date beside each fill write: a second copy of the fills
-- can drift from them (a code path that forgets to update it, a crash between the two writes, a
-- row fixed by hand). A view over `upbit_order_attempts` cannot: every fill the executor or the
-- order-poller stores is in the ledger the moment it is committed, whatever path wrote it and
-- whatever state the order is in. It reads only which of our orders ran live (mode, side,
-- symbol) and what Upbit reported they executed (executed_volume, paid_fee, avg_price), never a
-- status column, so an order still open counts with what it has executed so far (as last stored
-- by the order-poller), and a `cancel` or SMP-prevented final order counts with what it
-- executed before it ended. Attempts in shadow or test mode never fill, and orders placed by
-- hand or by other programs are never in upbit_order_attempts, so the owner's own coins can
-- never enter the ledger. The cost is a scan of the live attempts with fills (a few rows a day
-- per market; indexed below). A later migration that changes one of these columns must drop
-- and recreate the views (PostgreSQL refuses to alter a column a view uses).
--
-- Volume that leaves without a sale is written to position_adjustments (append-only): `gone`
-- (coins no longer on the exchange, e.g. sold by hand; an alarm is raised where it is decided)
-- and `dust` (a remainder below Upbit's minimum order total of 5,000 KRW that cannot be sold,
-- recorded with its value at the last price).
--
-- open_volume = bought - sold - gone - dust, exact (NUMERIC). Costs and pnl are informational:
-- a fill's KRW amount is avg_price x executed_volume, and avg_price is stored rounded to 8
-- decimals; the volumes, which decide what is sold, are Upbit's exact strings.

-- Volume closed without a sale.
CREATE TABLE position_adjustments (
  id         BIGSERIAL   PRIMARY KEY,
  ts         TIMESTAMPTZ NOT NULL DEFAULT now(),
  symbol     TEXT        NOT NULL,
  kind       TEXT        NOT NULL CHECK (kind IN ('gone', 'dust')),
  volume     NUMERIC     NOT NULL CHECK (volume > 0),
  value_krw  NUMERIC     CHECK (value_krw >= 0), -- dust: volume x last price when recorded
  reason     TEXT        NOT NULL,
  CHECK ((kind = 'dust') = (value_krw IS NOT NULL))
);
CREATE INDEX position_adjustments_symbol ON position_adjustments (symbol, ts);

CREATE INDEX upbit_order_attempts_live_fills ON upbit_order_attempts (symbol, ts, id)
  WHERE mode = 'live' AND executed_volume > 0;

-- Every movement of upbot's live holdings, oldest first per market: buys (+), sells, gone and
-- dust (-). `funds` is the KRW amount of a fill before fees.
CREATE VIEW position_movements AS
  SELECT symbol, ts, 0 AS source, id,
         CASE side WHEN 'bid' THEN 'buy' ELSE 'sell' END AS kind,
         executed_volume AS volume,
         CASE side WHEN 'bid' THEN executed_volume ELSE -executed_volume END AS delta,
         coalesce(avg_price * executed_volume, 0) AS funds,
         coalesce(paid_fee, 0) AS fee
  FROM upbit_order_attempts
  WHERE mode = 'live' AND executed_volume > 0
  UNION ALL
  SELECT symbol, ts, 1 AS source, id, kind, volume, -volume AS delta, 0 AS funds, 0 AS fee
  FROM position_adjustments;

-- One row per market upbot ever held live. The current position starts after the last movement
-- that left the market flat (running holding <= 0); its buys give the average entry price
-- (cost basis per coin, buy fees included). realised_pnl = sale proceeds net of fees - cost of
-- all buys + cost basis of what is still open; gone and dust count as closed at no proceeds.
CREATE VIEW position_ledger AS
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
         bought - sold - gone - dust AS open_volume,
         cost, proceeds, fees,
         CASE WHEN bought - sold - gone - dust > 0
           THEN round(entry_cost / nullif(entry_volume, 0), 8) END AS avg_entry_price,
         round(proceeds - cost + CASE WHEN bought - sold - gone - dust > 0
           THEN (bought - sold - gone - dust) * coalesce(entry_cost / nullif(entry_volume, 0), 0)
           ELSE 0 END, 8) AS realised_pnl,
         last_ts
  FROM sums;

-- live_positions stays a table written by the account actor (one row per configured market and
-- per market the ledger still holds), so the seed's queries keep working, but the position is
-- the ledger's: position_status is LONG exactly when the ledger's open volume is above zero, and
-- owned_volume / entry_price are the ledger's. krw_balance, base_balance, base_locked and
-- avg_buy_price stay the exchange account's figures (they include the owner's own coins).
ALTER TABLE live_positions
  ADD COLUMN owned_volume NUMERIC NOT NULL DEFAULT 0,
  ADD COLUMN entry_price  NUMERIC;
COMMENT ON COLUMN live_positions.position_status IS
  'LONG when the position ledger holds an open volume above zero for this market, else FLAT';
COMMENT ON COLUMN live_positions.owned_volume IS
  'What upbot owns (position_ledger.open_volume); never the owner''s own coins';
COMMENT ON COLUMN live_positions.entry_price IS
  'position_ledger.avg_entry_price (KRW per coin, buy fees included); null when flat';
COMMENT ON COLUMN live_positions.base_balance IS
  'The exchange''s available balance of the coin (the whole account, owner''s coins included)';
COMMENT ON COLUMN live_positions.avg_buy_price IS
  'The exchange''s average buy price of the coin (the whole account)';

-- Rows written before this migration derived LONG from the balances, the owner's coins included.
UPDATE live_positions p
SET position_status = CASE WHEN coalesce(l.open_volume, 0) > 0 THEN 'LONG' ELSE 'FLAT' END,
    owned_volume = greatest(coalesce(l.open_volume, 0), 0),
    entry_price = l.avg_entry_price,
    updated_at = now()
FROM live_positions q LEFT JOIN position_ledger l ON l.symbol = q.symbol
WHERE q.symbol = p.symbol;
