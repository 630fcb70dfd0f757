-- Hot standby (lib/lease.ts). The upbot that holds the session advisory lock 129125548258418
-- ("upbot-run") is the leader; on taking the lock it increments `epoch` and records its lease
-- session's backend pid. Every attempt write of the leader's actors checks, in its own
-- transaction and under FOR SHARE on this row, that the epoch is still its own and that its lease
-- session still holds the lock: a leader that lost its lease writes (and so sends) nothing more.
CREATE TABLE upbot_lease (
  id integer PRIMARY KEY CHECK (id = 1),
  epoch bigint NOT NULL,
  holder_pid integer,
  holder text,
  acquired_at timestamptz
);
INSERT INTO upbot_lease (id, epoch) VALUES (1, 0);
