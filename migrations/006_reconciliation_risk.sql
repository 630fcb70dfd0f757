-- Reconciliation with the exchange, the system gate in front of every live order, and the daily
-- loss limit's resume marks. Self-contained: no reference to tables of migrations 002-005, so it
-- applies whatever order those land in.

-- One row per reconciliation run. completed_at is null while it runs or when it failed;
-- closed_until is how far the closed-order listing got (the next run starts there).
CREATE TABLE reconciliations (
  id              BIGSERIAL   PRIMARY KEY,
  started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed_at    TIMESTAMPTZ,
  closed_from     TIMESTAMPTZ NOT NULL,            -- start of the closed-order window listed
  closed_until    TIMESTAMPTZ NOT NULL,            -- end of that window
  open_orders     INTEGER     NOT NULL DEFAULT 0,  -- exchange orders seen open
  closed_orders   INTEGER     NOT NULL DEFAULT 0,  -- exchange orders seen closed in the window
  findings_count  INTEGER     NOT NULL DEFAULT 0,
  error_msg       TEXT                             -- why a run did not complete
);
CREATE INDEX reconciliations_completed ON reconciliations (completed_at DESC)
  WHERE completed_at IS NOT NULL;

-- What a reconciliation found that a person must see. Never deleted.
--   own_order_unrecorded: an order with this installation's prefix that the database lacks;
--   foreign_installation_order: an order with another installation's paper- prefix (reported,
--     never traded: the owner decides);
--   balance_below_ledger: the exchange holds less of a coin than the ledger says upbot bought;
--   attempt_unresolved: an attempt whose outcome was still open at reconciliation (left to the
--     executor's resolution by identifier);
--   closed_window_truncated: more closed orders in one second than one page holds.
CREATE TABLE reconciliation_findings (
  id                 BIGSERIAL   PRIMARY KEY,
  reconciliation_id  BIGINT      NOT NULL REFERENCES reconciliations (id),
  at                 TIMESTAMPTZ NOT NULL DEFAULT now(),
  kind               TEXT        NOT NULL CHECK (kind IN ('own_order_unrecorded',
                       'foreign_installation_order', 'balance_below_ledger', 'attempt_unresolved',
                       'closed_window_truncated')),
  market             TEXT,
  identifier         TEXT,
  uuid               TEXT,
  details            JSONB       NOT NULL DEFAULT '{}'
);
CREATE INDEX reconciliation_findings_run ON reconciliation_findings (reconciliation_id);

-- System gates: states set by upbot itself (not the operator's halt) that stop every live order,
-- entries and exits alike. One row per gate; 'reconciliation' is closed at a live start and after
-- a connection outage, and opened only by a reconciliation that started after it was closed.
CREATE TABLE system_gates (
  name        TEXT        PRIMARY KEY CHECK (name IN ('reconciliation')),
  open        BOOLEAN     NOT NULL,
  reason      TEXT,                              -- why it is closed; null while open
  changed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  CHECK (open OR reason IS NOT NULL)
);

-- Resumes of the daily realised-loss limit: losses before the newest resume no longer count
-- towards today's limit (the KST day boundary resets it as well).
CREATE TABLE daily_loss_resumes (
  id          BIGSERIAL   PRIMARY KEY,
  at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  resumed_by  TEXT        NOT NULL
);

-- Slow re-checks of orders Upbit created and then lost (the executor's `failed` / `order_lost`:
-- unknown by uuid and by identifier after the poll limit). Never forgotten: asked about again at
-- a slow rate until Upbit answers; until then entries on the market wait (risk gate).
CREATE TABLE lost_order_checks (
  attempt_id       BIGINT      PRIMARY KEY REFERENCES upbit_order_attempts (id),
  checks           INTEGER     NOT NULL DEFAULT 0,
  last_checked_at  TIMESTAMPTZ,
  resolved_at      TIMESTAMPTZ,                  -- when Upbit answered with the order
  exchange_state   TEXT,                         -- its state then (wait, done, cancel, ...)
  details          JSONB                         -- the order as Upbit reported it
);
