-- Health as the leader's probe engine last published it, readable by every replica,
-- and the recent readiness transitions of each address.
CREATE TABLE service_health (
    namespace       text        NOT NULL,
    name            text        NOT NULL,
    ready_addresses integer     NOT NULL,
    total_addresses integer     NOT NULL,
    report          jsonb       NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, name),
    FOREIGN KEY (namespace, name) REFERENCES external_services (namespace, name)
        ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE INDEX service_health_unready_idx ON service_health (namespace, name)
    WHERE ready_addresses < total_addresses;

CREATE TABLE health_transitions (
    id         bigserial   PRIMARY KEY,
    namespace  text        NOT NULL,
    name       text        NOT NULL,
    address    text        NOT NULL,
    check_name text        NOT NULL,
    from_state text        NOT NULL,
    to_state   text        NOT NULL,
    error      text,
    at         timestamptz NOT NULL,
    FOREIGN KEY (namespace, name) REFERENCES external_services (namespace, name)
        ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE INDEX health_transitions_address_idx ON health_transitions (namespace, name, address, id DESC);
