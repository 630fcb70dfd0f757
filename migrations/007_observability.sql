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
