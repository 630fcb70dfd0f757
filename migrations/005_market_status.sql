-- Market warnings and listing state, kept fresh by the feed's market-status poller
-- (GET /v1/market/all?is_details=true and GET /v1/ticker). Read by the risk gate: entries are
-- refused on a market under warning, caution or delisting; exits never are.
CREATE TABLE upbit_market_status (
  market          TEXT        PRIMARY KEY,
  warning         BOOLEAN     NOT NULL,                 -- market_event.warning (투자유의)
  caution         JSONB       NOT NULL DEFAULT '{}',    -- market_event.caution flags, as sent
  market_state    TEXT,                                 -- PREVIEW / ACTIVE / DELISTED; UNLISTED when
                                                        -- market/all no longer lists it; null = not told
  delisting_date  TEXT,                                 -- as Upbit sent it (yyyy-MM-dd), or null
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
