-- A change that keeps failing to reach the cluster (its namespace does not exist, an
-- admission policy refuses it) waits longer after each failure instead of staying at the
-- head of the outbox, where it held back every change behind it.
ALTER TABLE outbox
    ADD COLUMN attempts        integer     NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_error      text;

CREATE INDEX outbox_due ON outbox (next_attempt_at, id);
