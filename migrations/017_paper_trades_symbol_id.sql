-- The executor reads again only the paper trades of markets that wait (an exit whose entry is
-- still filling, or waiting for a lost sell): by market, in id order, from the first that waits
-- (lib/store/paper_trades.ts paperTradesWithAttemptAfter). paper_trades_symbol_ts orders by ts, so
-- that read would scan every trade the market ever had.
CREATE INDEX paper_trades_symbol_id ON paper_trades (symbol, id);
