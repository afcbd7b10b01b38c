-- What happened to each registration, for server-sent event streams and long polls on
-- every replica: written by triggers in the same transaction as the change itself, so
-- that no writer can forget one, and announced with NOTIFY when it commits.
CREATE TABLE service_events (
    id         bigserial   PRIMARY KEY,
    -- The writing transaction. Readers go in (txid, id) order and only up to the oldest
    -- transaction still running: an event committed late, with a smaller id than one
    -- already read, is then never skipped by a reader that remembers where it stopped.
    txid       bigint      NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    at         timestamptz NOT NULL DEFAULT now(),
    namespace  text        NOT NULL,
    name       text        NOT NULL,
    type       text        NOT NULL,
    generation bigint,
    detail     jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX service_events_position ON service_events (txid, id);
CREATE INDEX service_events_service ON service_events (namespace, name, txid, id);
CREATE INDEX service_events_namespace ON service_events (namespace, txid, id);
CREATE INDEX service_events_at ON service_events (at);

CREATE FUNCTION notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('extsvc_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER service_events_notify AFTER INSERT ON service_events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events();

-- Registered, changed, mirrored (or not), reconciled (or not), each address's readiness,
-- deleted.
CREATE FUNCTION service_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_reconciled jsonb;
    new_reconciled jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO service_events (namespace, name, type, generation, detail)
        VALUES (NEW.namespace, NEW.name, 'Registered', NEW.generation,
                jsonb_build_object('origin', NEW.origin));
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO service_events (namespace, name, type, generation)
        VALUES (OLD.namespace, OLD.name, 'Deleted', OLD.generation);
        RETURN NULL;
    END IF;
    IF NEW.generation IS DISTINCT FROM OLD.generation THEN
        INSERT INTO service_events (namespace, name, type, generation)
        VALUES (NEW.namespace, NEW.name, 'SpecChanged', NEW.generation);
    END IF;
    IF NEW.mirrored_generation IS DISTINCT FROM OLD.mirrored_generation
       AND NEW.mirrored_generation IS NOT NULL THEN
        INSERT INTO service_events (namespace, name, type, generation)
        VALUES (NEW.namespace, NEW.name, 'Mirrored', NEW.mirrored_generation);
    END IF;
    IF NEW.mirror_error IS DISTINCT FROM OLD.mirror_error AND NEW.mirror_error IS NOT NULL THEN
        INSERT INTO service_events (namespace, name, type, generation, detail)
        VALUES (NEW.namespace, NEW.name, 'MirrorFailed', NEW.generation,
                jsonb_build_object('message', NEW.mirror_error));
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        SELECT c INTO old_reconciled FROM jsonb_array_elements(coalesce(OLD.status -> 'conditions', '[]')) c
            WHERE c ->> 'type' = 'Reconciled';
        SELECT c INTO new_reconciled FROM jsonb_array_elements(coalesce(NEW.status -> 'conditions', '[]')) c
            WHERE c ->> 'type' = 'Reconciled';
        IF new_reconciled IS NOT NULL AND
           (old_reconciled IS NULL
            OR (old_reconciled -> 'status', old_reconciled -> 'reason', old_reconciled -> 'message',
                OLD.status -> 'observedGeneration')
               IS DISTINCT FROM
               (new_reconciled -> 'status', new_reconciled -> 'reason', new_reconciled -> 'message',
                NEW.status -> 'observedGeneration')) THEN
            INSERT INTO service_events (namespace, name, type, generation, detail)
            VALUES (NEW.namespace, NEW.name,
                    CASE WHEN new_reconciled ->> 'status' = 'True' THEN 'Reconciled'
                         WHEN new_reconciled ->> 'reason' = 'NameConflict' THEN 'NameConflict'
                         ELSE 'ReconcileFailed' END,
                    (NEW.status ->> 'observedGeneration')::bigint,
                    jsonb_build_object('reason', new_reconciled -> 'reason',
                                       'message', new_reconciled -> 'message'));
        END IF;
        -- Each address whose readiness or message changed, and each that went away.
        INSERT INTO service_events (namespace, name, type, generation, detail)
        SELECT NEW.namespace, NEW.name,
               CASE WHEN n.a IS NULL THEN 'AddressRemoved'
                    WHEN (n.a -> 'ready')::boolean THEN 'AddressReady'
                    ELSE 'AddressNotReady' END,
               (NEW.status ->> 'observedGeneration')::bigint,
               coalesce(n.a, jsonb_build_object('address', o.a -> 'address'))
        FROM (SELECT a FROM jsonb_array_elements(coalesce(NEW.status -> 'addresses', '[]')) a) n
        FULL JOIN (SELECT a FROM jsonb_array_elements(coalesce(OLD.status -> 'addresses', '[]')) a) o
          ON n.a ->> 'address' = o.a ->> 'address'
        WHERE o.a IS NULL OR n.a IS NULL
           OR (n.a -> 'ready', n.a -> 'message') IS DISTINCT FROM (o.a -> 'ready', o.a -> 'message');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER external_services_events
    AFTER INSERT OR DELETE OR UPDATE OF generation, mirrored_generation, mirror_error, status
    ON external_services FOR EACH ROW EXECUTE FUNCTION service_event();

-- Every check's readiness change on every address, as the probe engine records it.
CREATE FUNCTION check_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO service_events (namespace, name, type, detail)
    VALUES (NEW.namespace, NEW.name,
            CASE NEW.to_state WHEN 'ready' THEN 'CheckReady' ELSE 'CheckNotReady' END,
            jsonb_strip_nulls(jsonb_build_object('address', NEW.address, 'check', NEW.check_name,
                                                 'from', NEW.from_state, 'to', NEW.to_state,
                                                 'error', NEW.error)));
    RETURN NULL;
END
$$;

CREATE TRIGGER health_transitions_events AFTER INSERT ON health_transitions
    FOR EACH ROW EXECUTE FUNCTION check_event();

-- Addresses taken out of rotation for a while, without touching the spec. A window
-- ends when `until` passes (the leader then deletes it) or when it is deleted early.
CREATE TABLE maintenance_windows (
    namespace text        NOT NULL,
    name      text        NOT NULL,
    -- An IP or DNS name among the registration's endpoints.
    address   text        NOT NULL,
    reason    text        NOT NULL,
    since     timestamptz NOT NULL DEFAULT now(),
    until     timestamptz NOT NULL,
    actor     text        NOT NULL,
    PRIMARY KEY (namespace, name, address),
    FOREIGN KEY (namespace, name) REFERENCES external_services (namespace, name)
        ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX maintenance_windows_until ON maintenance_windows (until);

CREATE FUNCTION maintenance_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO service_events (namespace, name, type, detail)
        VALUES (OLD.namespace, OLD.name, 'MaintenanceEnded',
                jsonb_build_object('address', OLD.address, 'reason', OLD.reason));
    ELSE
        INSERT INTO service_events (namespace, name, type, detail)
        VALUES (NEW.namespace, NEW.name, 'MaintenanceStarted',
                jsonb_build_object('address', NEW.address, 'reason', NEW.reason,
                                   'until', NEW.until, 'by', NEW.actor));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER maintenance_windows_events AFTER INSERT OR UPDATE OR DELETE ON maintenance_windows
    FOR EACH ROW EXECUTE FUNCTION maintenance_event();
