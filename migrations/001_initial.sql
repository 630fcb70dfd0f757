-- upbot initial schema: market data, evaluator output, paper trades, exchange orders, account.
--
-- How money and quantities are stored: every price, volume, amount, fee and balance is NUMERIC
-- (arbitrary precision decimal, no scale fixed). Upbit sends decimal strings; KRW prices reach 10^8
-- and more while volumes carry 8 decimals and sub-KRW coins tick at 10^-8, so a product such as
-- price x volume needs ~17 significant digits, beyond what DOUBLE PRECISION holds exactly. NUMERIC
-- stores exactly what the exchange said, sums exactly, and postgres.js hands it back as a string,
-- so nothing is rounded through a float on the way. Model outputs (probabilities, EV, returns) are
-- DOUBLE PRECISION: they are estimates, not amounts.

-- 1-second bars built by the feed from WebSocket trades.
CREATE TABLE market_1s (
  symbol        TEXT        NOT NULL,
  ts            TIMESTAMPTZ NOT NULL,           -- start of the second
  open          NUMERIC     NOT NULL,
  high          NUMERIC     NOT NULL,
  low           NUMERIC     NOT NULL,
  close         NUMERIC     NOT NULL,
  volume        NUMERIC     NOT NULL,
  quote_volume  NUMERIC     NOT NULL,
  trade_count   INTEGER     NOT NULL,
  buy_volume    NUMERIC     NOT NULL,
  sell_volume   NUMERIC     NOT NULL,
  is_final      BOOLEAN     NOT NULL DEFAULT false, -- true once the watermark has passed
  updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, ts)
);

-- Triple-barrier labels of past bars (take-profit, stop-loss, horizon).
CREATE TABLE barrier_labels (
  symbol          TEXT             NOT NULL,
  ts              TIMESTAMPTZ      NOT NULL,    -- the labelled bar
  tp_pct          DOUBLE PRECISION NOT NULL,
  sl_pct          DOUBLE PRECISION NOT NULL,
  horizon_sec     INTEGER          NOT NULL,
  label           SMALLINT         NOT NULL CHECK (label IN (-1, 0, 1)),
  barrier_hit_ts  TIMESTAMPTZ,
  ret             DOUBLE PRECISION,
  created_at      TIMESTAMPTZ      NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, ts)
);

-- Online predictions of the barrier probabilities and the expected value.
CREATE TABLE predictions (
  symbol      TEXT             NOT NULL,
  ts          TIMESTAMPTZ      NOT NULL,
  p_up        DOUBLE PRECISION NOT NULL,
  p_down      DOUBLE PRECISION NOT NULL,
  p_flat      DOUBLE PRECISION NOT NULL,
  ev          DOUBLE PRECISION NOT NULL,       -- percent, after round-trip fees
  features    JSONB,
  profile     TEXT             NOT NULL,
  created_at  TIMESTAMPTZ      NOT NULL DEFAULT now(),
  PRIMARY KEY (symbol, ts)
);

-- Paper trades: one row per action (an ENTER_LONG row, later an EXIT_LONG row that points at it),
-- append-only, so the executor can follow them with a cursor on id.
CREATE TABLE paper_trades (
  id              BIGSERIAL   PRIMARY KEY,
  ts              TIMESTAMPTZ NOT NULL DEFAULT now(),
  symbol          TEXT        NOT NULL,
  action          TEXT        NOT NULL CHECK (action IN ('ENTER_LONG', 'EXIT_LONG')),
  policy_profile  TEXT        NOT NULL,
  entry_id        BIGINT      REFERENCES paper_trades (id), -- EXIT_LONG: its ENTER_LONG row
  entry_ts        TIMESTAMPTZ NOT NULL,
  entry_price     NUMERIC     NOT NULL,
  exit_ts         TIMESTAMPTZ,
  exit_price      NUMERIC,
  qty             NUMERIC     NOT NULL,
  fee             NUMERIC     NOT NULL,        -- fee of this action (0.05% of its notional)
  pnl             NUMERIC,                     -- EXIT_LONG: net of both fees
  hold_sec        INTEGER,
  exit_reason     TEXT CHECK (exit_reason IN ('TP', 'SL', 'TIMEOUT', 'EV_BAD')),
  ev              DOUBLE PRECISION,
  CHECK ((action = 'ENTER_LONG') = (exit_ts IS NULL))
);
CREATE INDEX paper_trades_symbol_ts ON paper_trades (symbol, ts DESC);
-- An entry is closed at most once.
CREATE UNIQUE INDEX paper_trades_one_exit_per_entry ON paper_trades (entry_id)
  WHERE entry_id IS NOT NULL;

-- Every order the executor decided to send (or only logged, in shadow mode).
CREATE TABLE upbit_order_attempts (
  id               BIGSERIAL   PRIMARY KEY,
  ts               TIMESTAMPTZ NOT NULL DEFAULT now(),
  symbol           TEXT        NOT NULL,
  action           TEXT        NOT NULL CHECK (action IN ('ENTER_LONG', 'EXIT_LONG')),
  mode             TEXT        NOT NULL CHECK (mode IN ('shadow', 'test', 'live')),
  side             TEXT        NOT NULL CHECK (side IN ('bid', 'ask')),
  ord_type         TEXT        NOT NULL CHECK (ord_type IN ('price', 'market', 'limit', 'best')),
  price            NUMERIC,
  volume           NUMERIC,
  paper_trade_id   BIGINT      REFERENCES paper_trades (id),
  response_json    JSONB,
  -- pending: written, request not yet answered; unknown: the answer was lost (resolve by identifier)
  status           TEXT        NOT NULL CHECK (status IN
                     ('pending', 'logged', 'test_ok', 'submitted', 'done', 'error', 'unknown', 'skipped')),
  error_msg        TEXT,
  uuid             TEXT,
  identifier       TEXT        NOT NULL UNIQUE, -- paper-{paper_trade_id}-{action}
  request_json     JSONB,                       -- the order body; never any auth material
  http_status      INTEGER,
  latency_ms       INTEGER,
  remaining_req    TEXT,
  retry_count      INTEGER     NOT NULL DEFAULT 0,
  final_state      TEXT        CHECK (final_state IN ('done', 'cancel')),
  executed_volume  NUMERIC,
  paid_fee         NUMERIC,
  avg_price        NUMERIC,
  poll_count       INTEGER     NOT NULL DEFAULT 0,
  updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX upbit_order_attempts_ts ON upbit_order_attempts (ts DESC);
CREATE INDEX upbit_order_attempts_open ON upbit_order_attempts (id)
  WHERE mode = 'live' AND status = 'submitted' AND final_state IS NULL;

-- Every observed state of a live order.
CREATE TABLE upbit_order_snapshots (
  id                BIGSERIAL   PRIMARY KEY,
  ts                TIMESTAMPTZ NOT NULL,
  symbol            TEXT        NOT NULL,
  uuid              TEXT        NOT NULL,
  state             TEXT,
  side              TEXT,
  ord_type          TEXT,
  price             NUMERIC,
  volume            NUMERIC,
  remaining_volume  NUMERIC,
  executed_volume   NUMERIC,
  paid_fee          NUMERIC,
  raw_json          JSONB       NOT NULL,
  UNIQUE (uuid, ts)
);
CREATE INDEX upbit_order_snapshots_symbol_ts ON upbit_order_snapshots (symbol, ts DESC);
CREATE INDEX upbit_order_snapshots_uuid_ts ON upbit_order_snapshots (uuid, ts DESC);

-- Balances as reported by GET /v1/accounts (one row per currency per poll).
CREATE TABLE upbit_account_snapshots (
  id             BIGSERIAL   PRIMARY KEY,
  ts             TIMESTAMPTZ NOT NULL,
  currency       TEXT        NOT NULL,
  balance        NUMERIC     NOT NULL,
  locked         NUMERIC     NOT NULL,
  avg_buy_price  NUMERIC     NOT NULL,
  unit_currency  TEXT        NOT NULL
);
CREATE INDEX upbit_account_snapshots_ts ON upbit_account_snapshots (ts DESC, currency);

-- The live position per market, derived from the latest balances.
CREATE TABLE live_positions (
  symbol           TEXT        PRIMARY KEY,
  ts               TIMESTAMPTZ NOT NULL,
  krw_balance      NUMERIC     NOT NULL,
  base_balance     NUMERIC     NOT NULL,
  base_locked      NUMERIC     NOT NULL DEFAULT 0,
  avg_buy_price    NUMERIC     NOT NULL,
  position_status  TEXT        NOT NULL CHECK (position_status IN ('FLAT', 'LONG')),
  updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Durable per-actor progress (e.g. the executor's cursor over paper_trades) and model state.
CREATE TABLE actor_state (
  name        TEXT        PRIMARY KEY,
  state       JSONB       NOT NULL,
  updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
