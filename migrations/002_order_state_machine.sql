-- Order state machine, installation id, identifier history.
--
-- `state` is the one truth about an attempt; every write goes through lib/execution/order_state.ts
-- (a transition table) and lib/store/order_attempts.ts (`where state = <from>` so two writers can
-- never both move it). `status` is kept, derived from `state` by a trigger, so the seed's queries and the
-- dashboard still read `logged`, `test_ok`, `submitted`, `done`, `error`, ... Why an attempt is in
-- its state is a code in `reason`, never parsed from `error_msg` (which is for people).

-- This installation's random id: 8 lowercase base32 characters, made once, here. Client order ids
-- are `paper-{installation}-{paper_trade_id}-{action}`, so a fresh database never reuses the
-- identifiers of an earlier one at Upbit.
CREATE TABLE installation (
  singleton   BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
  id          TEXT        NOT NULL CHECK (id ~ '^[a-z2-7]{8}$'),
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Bytes of a version-4 uuid (strong randomness on both backends); bytes 6 and 8 carry the version
-- and variant bits, so they are left out. A byte modulo 32 is uniform (256 = 8 x 32).
INSERT INTO installation (id)
SELECT string_agg(substr('abcdefghijklmnopqrstuvwxyz234567', get_byte(b, i) % 32 + 1, 1), ''
                  ORDER BY i)
FROM (SELECT uuid_send(gen_random_uuid()) AS b) AS r,
     unnest(ARRAY[0, 1, 2, 3, 4, 5, 10, 11]) AS i;

ALTER TABLE upbit_order_attempts
  ADD COLUMN state TEXT,
  ADD COLUMN reason TEXT,                   -- a code: 'stale_signal', 'insufficient_funds_ask', ...
  ADD COLUMN retry_at TIMESTAMPTZ,          -- a pending attempt is not sent before this
  ADD COLUMN cancel_requested_at TIMESTAMPTZ,
  ADD COLUMN identifier_seq INTEGER NOT NULL DEFAULT 0; -- n of the current `-r{n}` identifier

-- Closes decided from the position ledger (no paper trade) carry action CLOSE.
ALTER TABLE upbit_order_attempts DROP CONSTRAINT upbit_order_attempts_action_check;
ALTER TABLE upbit_order_attempts ADD CONSTRAINT upbit_order_attempts_action_check
  CHECK (action IN ('ENTER_LONG', 'EXIT_LONG', 'CLOSE'));
ALTER TABLE upbit_order_attempts DROP CONSTRAINT upbit_order_attempts_final_state_check;
ALTER TABLE upbit_order_attempts ADD CONSTRAINT upbit_order_attempts_final_state_check
  CHECK (final_state IN ('done', 'cancel', 'prevented'));

-- Existing rows. An `error` row with a uuid was a submitted order the poller lost track of: it may
-- exist, so it is resolved by identifier (unknown). Any other `error` is closed as failed: whether
-- it was meant to be retried depended on a setting, and terminal must not depend on a setting; an
-- exit among them leaves its position to the closer, which works from the fills.
UPDATE upbit_order_attempts SET
  state = CASE
    WHEN status IN ('logged', 'test_ok', 'skipped', 'pending', 'unknown') THEN status
    -- The seed's open order is `submitted` with no final state; with one, it is final.
    WHEN status IN ('submitted', 'done') AND final_state = 'cancel' THEN 'cancelled'
    WHEN status IN ('submitted', 'done') AND final_state = 'done' THEN 'filled'
    WHEN status = 'done' THEN 'filled'
    WHEN status = 'submitted' AND coalesce(executed_volume, 0) > 0 THEN 'partially_filled'
    WHEN status = 'submitted' THEN 'open'
    WHEN status = 'error' AND uuid IS NOT NULL THEN 'unknown'
    ELSE 'failed'
  END,
  reason = CASE
    WHEN status = 'error' AND uuid IS NOT NULL THEN 'order_not_found'
    WHEN status = 'error' THEN 'migrated_error'
    WHEN status = 'unknown' AND error_msg = 'duplicated_identifier' THEN 'duplicated_identifier'
    WHEN status = 'unknown' THEN 'lost_response'
    WHEN status = 'skipped' AND error_msg LIKE 'stale%' THEN 'stale_signal'
    WHEN status = 'skipped' THEN 'skipped'
    ELSE NULL
  END,
  cancel_requested_at = CASE WHEN error_msg LIKE 'cancel requested%' THEN updated_at END;

DROP INDEX upbit_order_attempts_open;
ALTER TABLE upbit_order_attempts ALTER COLUMN state SET NOT NULL;
ALTER TABLE upbit_order_attempts ADD CONSTRAINT upbit_order_attempts_state_check CHECK (state IN (
  'pending', 'sent', 'unknown', 'open', 'partially_filled', 'filled', 'cancelled', 'prevented',
  'rejected', 'failed', 'conflict', 'skipped', 'logged', 'test_ok'));

-- `status` is derived from `state` on every write (lib/execution/order_state.ts `statusOf` is the
-- same mapping), so it can never disagree with it. A writer that knows only the seed's `status`
-- (an INSERT without `state`) gets the matching state; a write of `status` alone never moves an
-- attempt (the state machine does).
CREATE FUNCTION upbit_order_attempts_derive_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state IS NULL THEN
    NEW.state := CASE
      WHEN NEW.status IN ('submitted', 'done') AND NEW.final_state = 'cancel' THEN 'cancelled'
      WHEN NEW.status IN ('submitted', 'done') AND NEW.final_state = 'prevented' THEN 'prevented'
      WHEN NEW.status IN ('submitted', 'done') AND NEW.final_state = 'done' THEN 'filled'
      WHEN NEW.status = 'done' THEN 'filled'
      WHEN NEW.status = 'submitted' AND coalesce(NEW.executed_volume, 0) > 0 THEN 'partially_filled'
      WHEN NEW.status = 'submitted' THEN 'open'
      WHEN NEW.status = 'error' THEN 'failed'
      ELSE NEW.status
    END;
  END IF;
  NEW.status := CASE
    WHEN NEW.state IN ('pending', 'sent') THEN 'pending'
    WHEN NEW.state IN ('open', 'partially_filled') THEN 'submitted'
    WHEN NEW.state IN ('filled', 'cancelled', 'prevented') THEN 'done'
    WHEN NEW.state IN ('rejected', 'failed', 'conflict') THEN 'error'
    ELSE NEW.state
  END;
  RETURN NEW;
END
$$;
CREATE TRIGGER upbit_order_attempts_derive_status
  BEFORE INSERT OR UPDATE ON upbit_order_attempts
  FOR EACH ROW EXECUTE FUNCTION upbit_order_attempts_derive_status();
-- (NOT NULL on state is checked after this BEFORE trigger has filled it in.)
-- Rows converted above get their status from their new state.
UPDATE upbit_order_attempts SET state = state;

CREATE INDEX upbit_order_attempts_open ON upbit_order_attempts (id)
  WHERE mode = 'live' AND state IN ('open', 'partially_filled');
CREATE INDEX upbit_order_attempts_unresolved ON upbit_order_attempts (id)
  WHERE state IN ('pending', 'sent', 'unknown');
CREATE INDEX upbit_order_attempts_paper ON upbit_order_attempts (paper_trade_id);

-- Every identifier an attempt ever used (its first, and each fresh `-r{n}`): all are checked when
-- resolving, and none is ever given to another attempt.
CREATE TABLE upbit_order_identifiers (
  identifier  TEXT        PRIMARY KEY,
  attempt_id  BIGINT      NOT NULL REFERENCES upbit_order_attempts (id),
  created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX upbit_order_identifiers_attempt ON upbit_order_identifiers (attempt_id);
INSERT INTO upbit_order_identifiers (identifier, attempt_id, created_at)
SELECT identifier, id, ts FROM upbit_order_attempts;

-- Numbers of the closes the executor sends from the position ledger (`paper-{inst}-close-{n}`).
CREATE SEQUENCE upbit_close_seq;
