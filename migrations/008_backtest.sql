-- Backtest runs and their trades (deno task backtest). A run's report is also written as JSON
-- beside its chart; here it is kept with the parameters and the code version that produced it.
CREATE TABLE backtest_runs (
  id            BIGSERIAL   PRIMARY KEY,
  created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  code_version  TEXT        NOT NULL,          -- git describe, or 'unknown'
  app_version   TEXT        NOT NULL,          -- deno.json "version", or 'unknown'
  markets       TEXT[]      NOT NULL,
  from_ts       TIMESTAMPTZ NOT NULL,          -- inclusive
  to_ts         TIMESTAMPTZ NOT NULL,          -- exclusive
  source        TEXT        NOT NULL CHECK (source IN ('db', 'files')),
  parameters    JSONB       NOT NULL,          -- profile, resolved params, KRW amount, slippage
  report        JSONB       NOT NULL           -- the report (metrics per market and in total)
);
CREATE INDEX backtest_runs_created_at ON backtest_runs (created_at DESC);

-- One row per closed round trip of a run: the paper trade and its fill by the fill model.
CREATE TABLE backtest_trades (
  run_id        BIGINT      NOT NULL REFERENCES backtest_runs (id) ON DELETE CASCADE,
  seq           INTEGER     NOT NULL,          -- order by exit time within the run
  symbol        TEXT        NOT NULL,
  entry_ts      TIMESTAMPTZ NOT NULL,
  exit_ts       TIMESTAMPTZ NOT NULL,
  exit_reason   TEXT        NOT NULL CHECK (exit_reason IN ('TP', 'SL', 'TIMEOUT', 'EV_BAD')),
  hold_sec      INTEGER     NOT NULL,
  qty           NUMERIC     NOT NULL,
  paper_entry   NUMERIC     NOT NULL,
  paper_exit    NUMERIC     NOT NULL,
  paper_fees    NUMERIC     NOT NULL,
  paper_pnl     NUMERIC     NOT NULL,
  spread_entry  NUMERIC     NOT NULL,          -- the paper trade bought at the estimated ask
  spread_exit   NUMERIC     NOT NULL,          -- and sold at the estimated bid
  spread_pnl    NUMERIC     NOT NULL,
  fill_entry_ts TIMESTAMPTZ,                   -- null: the data ended before the exit could fill
  fill_exit_ts  TIMESTAMPTZ,
  fill_entry    NUMERIC,
  fill_exit     NUMERIC,
  fill_qty      NUMERIC,
  fill_fees     NUMERIC,
  fill_pnl      NUMERIC,
  PRIMARY KEY (run_id, seq)
);

-- What a market order would really have got in each second (paper that tells the truth): the
-- price of the second's last buyer-initiated trade (it lifted the ask) and of its last
-- seller-initiated trade (it hit the bid). Null when the second had no trade of that side, and on
-- bars stored before this migration.
ALTER TABLE market_1s ADD COLUMN ask_est NUMERIC;
ALTER TABLE market_1s ADD COLUMN bid_est NUMERIC;
