-- Readers of events wait for the transactions that may still add an event before the
-- last one they read. Only this database's transactions can: one running elsewhere on
-- the same server (another application, a long batch job) must not hold the streams
-- back, as the server-wide oldest transaction would. The horizon is counted from the
-- snapshot's xmax back by the age of this database's oldest running transaction; the age
-- is counted from an xid no older than that xmax, so the horizon errs low, never high.
CREATE FUNCTION event_horizon() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint
           - coalesce(max(age(backend_xid)), 0)
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xid IS NOT NULL
$$;
