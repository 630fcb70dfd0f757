-- Control commands (deno task halt/resume/flatten, lib/control/command_dir.ts) already handled,
-- by id. The id is inserted in the same transaction as the command's effect, so a command is
-- applied at most once whatever happens to its files afterwards (an acknowledgement that cannot be
-- written, a crash before the inbox file is removed): a command whose id is here is only
-- acknowledged again, with the acknowledgement stored here. A command refused for the trading
-- state (a resume while a flatten is pending) is recorded too, with its refusal.
CREATE TABLE applied_control_commands (
  id          UUID        PRIMARY KEY,
  action      TEXT        NOT NULL,
  applied_by  TEXT        NOT NULL,
  applied_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
  ack         JSONB                               -- the acknowledgement; set in the same transaction
);
