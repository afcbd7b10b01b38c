-- The horizon of 20261204000002 read pg_stat_activity after the query's snapshot was
-- taken: a transaction running at the snapshot that committed in between was missing
-- from it, so the horizon rose above that transaction while its events were still
-- invisible, and a reader moved past them for good. The horizon now comes from the
-- snapshot itself: the oldest transaction running at it, leaving out only those of
-- other databases (which cannot add events here). A transaction of another database
-- that ends before pg_stat_activity is read is not left out: the horizon then errs low,
-- which only delays.
CREATE OR REPLACE FUNCTION event_horizon() RETURNS bigint LANGUAGE sql STABLE AS $$
    WITH snapshot AS (SELECT pg_current_snapshot() AS s),
         elsewhere AS (
             SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
             WHERE datname IS DISTINCT FROM current_database() AND backend_xid IS NOT NULL)
    SELECT coalesce(
        (SELECT min(x::text::bigint) FROM snapshot, pg_snapshot_xip(s) AS x
         WHERE x::text::bigint % 4294967296 NOT IN (SELECT xid FROM elsewhere)),
        (SELECT pg_snapshot_xmax(s)::text::bigint FROM snapshot))
$$;

-- The leader reloads maintenance windows when they change, on a channel of their own:
-- every other event (a status, a probe transition) would wake it for nothing.
CREATE FUNCTION notify_maintenance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('extsvc_maintenance', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER maintenance_windows_notify AFTER INSERT OR UPDATE OR DELETE ON maintenance_windows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_maintenance();

-- A deletion is done when the cluster has it too: the mirror drops the outbox row of a
-- delete once the ExternalService is gone, and that is an event (waits for `deleted`
-- wake on it).
CREATE FUNCTION unmirrored_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO service_events (namespace, name, type, generation)
    VALUES (OLD.namespace, OLD.name, 'RemovedFromCluster', OLD.generation);
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_unmirrored AFTER DELETE ON outbox
    FOR EACH ROW WHEN (OLD.operation = 'delete') EXECUTE FUNCTION unmirrored_event();
