-- Retention (lib/store/retention.ts) prunes upbit_account_snapshots one currency at a time and
-- always keeps each currency's newest row (the risk gate and the dashboards read it): both need
-- the rows of one currency in time order. The other pruned tables already have such an index
-- (market_1s, barrier_labels and predictions: their primary key (symbol, ts);
-- upbit_order_snapshots: (symbol, ts) and (uuid, ts)).
CREATE INDEX upbit_account_snapshots_currency_ts ON upbit_account_snapshots (currency, ts);
