-- Trading state (reduce-only halts), flatten requests and alarms.
--
-- A halt stops new entries only: exits, cancels and reconciliation go on. It is stored per scope,
-- 'global' or a market code such as 'KRW-BTC', so it survives restarts and records who halted, why
-- and since when. Every change is also appended to trading_state_history, which is never updated
-- or deleted, so the record of who did what survives later changes.

CREATE TABLE trading_state (
  scope       TEXT        PRIMARY KEY CHECK (scope = 'global' OR scope ~ '^[A-Z0-9]+-[A-Z0-9]+$'),
  halted      BOOLEAN     NOT NULL,
  reason      TEXT,                                  -- why it was halted; null once resumed
  changed_by  TEXT        NOT NULL,                  -- 'cli', 'supervisor', 'executor', ...
  since       TIMESTAMPTZ NOT NULL DEFAULT now(),    -- when the current halted/resumed state began
  CHECK (NOT halted OR reason IS NOT NULL)
);

-- A request to close every ledger position now; the executor completes it.
CREATE TABLE flatten_requests (
  id            SERIAL      PRIMARY KEY,
  requested_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  reason        TEXT        NOT NULL,
  requested_by  TEXT        NOT NULL,
  completed_at  TIMESTAMPTZ
);
CREATE INDEX flatten_requests_pending ON flatten_requests (id) WHERE completed_at IS NULL;

-- Append-only record of every halt, resume and flatten (who, what, why, when).
CREATE TABLE trading_state_history (
  id          BIGSERIAL   PRIMARY KEY,
  at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  scope       TEXT        NOT NULL,
  action      TEXT        NOT NULL
              CHECK (action IN ('halt', 'resume', 'flatten_requested', 'flatten_completed')),
  reason      TEXT,
  changed_by  TEXT        NOT NULL,
  flatten_id  INTEGER     REFERENCES flatten_requests (id)
);
CREATE INDEX trading_state_history_at ON trading_state_history (at DESC);

-- Alarms: conditions a person must see (an exit that keeps failing, an identifier conflict, ...).
-- At most one active (not cleared) alarm per (code, market); raising it again counts it up.
-- Cleared rows stay as the record.
CREATE TABLE alarms (
  id          SERIAL      PRIMARY KEY,
  code        TEXT        NOT NULL,
  market      TEXT,
  message     TEXT        NOT NULL,
  details     JSONB,
  count       INTEGER     NOT NULL DEFAULT 1,
  first_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  cleared_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX alarms_one_active ON alarms (code, (coalesce(market, '')))
  WHERE cleared_at IS NULL;
