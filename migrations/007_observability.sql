-- Observability: facts that otherwise live only in memory (actor restarts and heartbeat ages,
-- the supervisor's halt, active alarms) sampled every 10 s by the main thread, so that Grafana can
-- draw them over time. Rows older than 7 days are deleted by the sampler.

CREATE TABLE obs_samples (
  ts      TIMESTAMPTZ      NOT NULL,
  metric  TEXT             NOT NULL,            -- e.g. 'actor_restarts', 'alarms_active'
  label   TEXT             NOT NULL DEFAULT '', -- e.g. the actor's name; '' when none
  value   DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (metric, label, ts)
);
CREATE INDEX obs_samples_ts ON obs_samples (ts);

-- Grafana's paper pnl and attempt series read these tables by time.
CREATE INDEX paper_trades_ts ON paper_trades (ts);

-- 1-minute rollup of market_1s, kept up to date by a trigger on every insert and update of a
-- 1-second bar (the feed upserts open bars several times before they are final), so that Grafana
-- reads 60 times fewer rows for long ranges. volume and trade_count add the change of the 1-second
-- row; open and close are those of the earliest and latest second seen.
CREATE TABLE market_1m (
  symbol       TEXT        NOT NULL,
  ts           TIMESTAMPTZ NOT NULL,           -- start of the minute
  open         NUMERIC     NOT NULL,
  high         NUMERIC     NOT NULL,
  low          NUMERIC     NOT NULL,
  close        NUMERIC     NOT NULL,
  volume       NUMERIC     NOT NULL,
  trade_count  INTEGER     NOT NULL,
  first_ts     TIMESTAMPTZ NOT NULL,           -- the second that gave `open`
  last_ts      TIMESTAMPTZ NOT NULL,           -- the second that gave `close`
  PRIMARY KEY (symbol, ts)
);

CREATE FUNCTION market_1m_roll() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO market_1m AS m
    (symbol, ts, open, high, low, close, volume, trade_count, first_ts, last_ts)
  VALUES (NEW.symbol, date_trunc('minute', NEW.ts), NEW.open, NEW.high, NEW.low, NEW.close,
          NEW.volume, NEW.trade_count, NEW.ts, NEW.ts)
  ON CONFLICT (symbol, ts) DO UPDATE SET
    open = CASE WHEN NEW.ts <= m.first_ts THEN NEW.open ELSE m.open END,
    first_ts = LEAST(m.first_ts, NEW.ts),
    close = CASE WHEN NEW.ts >= m.last_ts THEN NEW.close ELSE m.close END,
    last_ts = GREATEST(m.last_ts, NEW.ts),
    high = GREATEST(m.high, NEW.high),
    low = LEAST(m.low, NEW.low),
    volume = m.volume + NEW.volume
             - CASE WHEN TG_OP = 'UPDATE' THEN OLD.volume ELSE 0 END,
    trade_count = m.trade_count + NEW.trade_count
                  - CASE WHEN TG_OP = 'UPDATE' THEN OLD.trade_count ELSE 0 END;
  RETURN NULL;
END
$$;

CREATE TRIGGER market_1m_roll AFTER INSERT OR UPDATE ON market_1s
  FOR EACH ROW EXECUTE FUNCTION market_1m_roll();

-- Bars stored before this migration.
INSERT INTO market_1m (symbol, ts, open, high, low, close, volume, trade_count, first_ts, last_ts)
SELECT symbol, date_trunc('minute', ts),
       (array_agg(open ORDER BY ts))[1], max(high), min(low), (array_agg(close ORDER BY ts DESC))[1],
       sum(volume), sum(trade_count), min(ts), max(ts)
FROM market_1s GROUP BY symbol, date_trunc('minute', ts);
