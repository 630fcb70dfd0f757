-- Reconciliation finding `identifier_second_order` (lib/execution/reconcile.ts): an order under an
-- identifier the database holds that is not its attempt's order (a create that landed after its
-- identifier was given up and rotated). Reported, never adopted.
ALTER TABLE reconciliation_findings DROP CONSTRAINT reconciliation_findings_kind_check;
ALTER TABLE reconciliation_findings ADD CONSTRAINT reconciliation_findings_kind_check
  CHECK (kind IN ('own_order_unrecorded', 'foreign_installation_order', 'balance_below_ledger',
    'attempt_unresolved', 'closed_window_truncated', 'identifier_second_order'));
