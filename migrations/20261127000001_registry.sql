-- Registrations made through the API, and the outbox that carries every change to
-- Kubernetes. The spec is stored as the validated document; the columns beside it are
-- the ones queries filter and sort by.

-- One counter for every change, so a resourceVersion never repeats, even across
-- delete and re-create of the same name.
CREATE SEQUENCE resource_version_seq;

CREATE TABLE external_services (
    uid              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    namespace        text        NOT NULL,
    name             text        NOT NULL,
    labels           jsonb       NOT NULL DEFAULT '{}',
    annotations      jsonb       NOT NULL DEFAULT '{}',
    spec             jsonb       NOT NULL,
    generation       bigint      NOT NULL DEFAULT 1,
    resource_version bigint      NOT NULL DEFAULT nextval('resource_version_seq'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT external_services_namespace_name_key UNIQUE (namespace, name)
);

-- Cross-namespace listings page by (namespace, name), served by the unique index.
CREATE INDEX external_services_labels_idx ON external_services USING gin (labels jsonb_path_ops);

-- A row per change, written in the same transaction as the change. The mirror reads the
-- current registration when it drains a row, so the row only names what changed.
CREATE TABLE outbox (
    id               bigserial   PRIMARY KEY,
    service_uid      uuid        NOT NULL,
    namespace        text        NOT NULL,
    name             text        NOT NULL,
    operation        text        NOT NULL CHECK (operation IN ('apply', 'delete')),
    generation       bigint      NOT NULL,
    resource_version bigint      NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Whether `labels` satisfies every requirement of a label selector, given as a JSON
-- array of {"key", "op": in|notin|exists|notexists, "values"}.
CREATE FUNCTION labels_match(labels jsonb, selector jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(bool_and(
        CASE r->>'op'
            WHEN 'in'        THEN coalesce((r->'values') ? (labels->>(r->>'key')), false)
            WHEN 'notin'     THEN NOT coalesce((r->'values') ? (labels->>(r->>'key')), false)
            WHEN 'exists'    THEN labels ? (r->>'key')
            WHEN 'notexists' THEN NOT (labels ? (r->>'key'))
        END), true)
    FROM jsonb_array_elements(selector) AS r
$$;
