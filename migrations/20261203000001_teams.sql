-- Teams own namespaces; a caller acts as one team with a role. A namespace belongs to
-- one team at most (its primary key), and leaves with the team.
CREATE TABLE teams (
    name             text        PRIMARY KEY,
    -- NULL: the installation's --max-services-per-team.
    max_services     integer     CHECK (max_services >= 0),
    -- Host patterns the team's Ingress rules may claim (`*.payments.example.com`).
    ingress_hosts    text[]      NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    resource_version bigint      NOT NULL DEFAULT 1
);

CREATE TABLE team_namespaces (
    namespace text PRIMARY KEY,
    team      text NOT NULL REFERENCES teams (name) ON DELETE CASCADE
);
CREATE INDEX team_namespaces_team ON team_namespaces (team);

-- API tokens: only a SHA-256 of the secret is kept (the secret has 256 random bits, so
-- a slow hash would add nothing). Revoked tokens stay, for the audit trail.
CREATE TABLE api_tokens (
    id           uuid        PRIMARY KEY,
    team         text        NOT NULL REFERENCES teams (name) ON DELETE CASCADE,
    name         text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    secret_hash  bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_team ON api_tokens (team, created_at);

-- Every write and every refused attempt: who, what, when, and how it ended.
CREATE TABLE audit_log (
    id                bigserial   PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    request_id        text        NOT NULL,
    actor             text        NOT NULL,
    team              text,
    method            text        NOT NULL,
    path              text        NOT NULL,
    namespace         text,
    name              text,
    generation_before bigint,
    generation_after  bigint,
    status            integer     NOT NULL,
    outcome           text        NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_team ON audit_log (team, id);
CREATE INDEX audit_log_namespace ON audit_log (namespace, id);
