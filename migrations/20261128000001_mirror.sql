-- What the mirror and controller publish back: where a registration came from, which
-- generation reached the cluster, and the status the controller wrote.
ALTER TABLE external_services
    ADD COLUMN origin text NOT NULL DEFAULT 'api' CHECK (origin IN ('api', 'cluster')),
    ADD COLUMN mirrored_generation bigint,
    ADD COLUMN mirror_error text,
    ADD COLUMN status jsonb;

-- Wake the mirror as soon as a change commits (it polls too, in case one is missed).
CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('extsvc_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();
