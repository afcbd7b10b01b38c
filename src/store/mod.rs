//! PostgreSQL: the only place that speaks SQL.

mod audit;
mod events;
mod health;
mod maintenance;
mod mirror;
mod notifications;
mod services;
mod teams;

pub use audit::{AuditQuery, AuditRecord, NewAuditRecord};
pub use events::{EventBatch, Position, StoredEvent};
pub use maintenance::StoredWindow;
pub use mirror::{Change, ClusterService};
pub use notifications::{Channel, Notifications};
pub use services::{Commit, ListQuery, Precondition, Stored, StoredService, WriteOutcome};
pub use teams::{NewToken, StoredTeam, StoredToken, TeamSpec, TokenGrant};

use std::str::FromStr;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a registration with this name already exists")]
    AlreadyExists,
    #[error("the namespace holds {limit} registrations, the most allowed")]
    NamespaceFull { limit: u32 },
    #[error("team {team} holds {limit} registrations, the most allowed")]
    TeamFull { team: String, limit: u32 },
    #[error("namespace {namespace} belongs to {team}")]
    NamespaceTaken { namespace: String, team: String },
    #[error("there are {limit} teams, the most allowed")]
    TooManyTeams { limit: i64 },
    #[error("the team has {limit} active tokens, the most allowed")]
    TooManyTokens { limit: i64 },
    #[error("no registration with this name exists")]
    NotFound,
    #[error("the registration changed since the version the request was based on")]
    PreconditionFailed,
    #[error("the registration was made in the cluster and is read-only here")]
    ReadOnly,
    #[error("the registration was created and deleted concurrently; try again")]
    Contended,
    #[error("could not connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("could not apply database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("could not refresh the planner's statistics after migrating")]
    RefreshStatistics(#[source] sqlx::Error),
    #[error("could not reach the database")]
    Ping(#[source] sqlx::Error),
    #[error("could not read a registration")]
    ReadService(#[source] sqlx::Error),
    #[error("could not list registrations")]
    ListServices(#[source] sqlx::Error),
    #[error("could not write a registration")]
    WriteService(#[source] sqlx::Error),
    #[error("could not record a change in the outbox")]
    RecordChange(#[source] sqlx::Error),
    #[error("could not read or clear the outbox")]
    ReadOutbox(#[source] sqlx::Error),
    #[error("could not read the identity of this installation")]
    ReadInstallation(#[source] sqlx::Error),
    #[error("could not write health")]
    WriteHealth(#[source] sqlx::Error),
    #[error("could not read health")]
    ReadHealth(#[source] sqlx::Error),
    #[error("could not read a team or token")]
    ReadTeam(#[source] sqlx::Error),
    #[error("could not write a team or token")]
    WriteTeam(#[source] sqlx::Error),
    #[error("could not read the audit log")]
    ReadAudit(#[source] sqlx::Error),
    #[error("could not write the audit log")]
    WriteAudit(#[source] sqlx::Error),
    #[error("could not read events")]
    ReadEvents(#[source] sqlx::Error),
    #[error("could not prune events")]
    WriteEvents(#[source] sqlx::Error),
    #[error("could not read maintenance windows")]
    ReadMaintenance(#[source] sqlx::Error),
    #[error("could not write maintenance windows")]
    WriteMaintenance(#[source] sqlx::Error),
    #[error("a stored document does not decode")]
    DecodeDocument(#[source] serde_json::Error),
}

/// Where the database is and how many connections a pool may open.
#[derive(Clone, Debug)]
pub struct Database {
    options: PgConnectOptions,
    max_connections: u32,
    services_per_namespace: u32,
    services_per_team: u32,
}

impl Database {
    pub fn new(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        let said = names_ssl_mode(url) || std::env::var_os("PGSSLMODE").is_some();
        if !said && !is_local(options.get_host()) {
            options = options.ssl_mode(PgSslMode::Require);
        }
        Ok(Self {
            options,
            max_connections,
            services_per_namespace: u32::MAX,
            services_per_team: u32::MAX,
        })
    }

    /// Caps the registrations of one namespace (see [`StoreError::NamespaceFull`]).
    pub fn services_per_namespace(self, limit: u32) -> Self {
        Self {
            services_per_namespace: limit,
            ..self
        }
    }

    /// Caps the registrations of a team that sets no cap of its own
    /// (see [`StoreError::TeamFull`]).
    pub fn services_per_team(self, limit: u32) -> Self {
        Self {
            services_per_team: limit,
            ..self
        }
    }

    /// Applies pending migrations, on a connection of its own and without the time
    /// limits of [`Database::store`] (building an index on a large table takes long).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let pool = self
            .pool(1)
            .connect_with(self.options.clone())
            .await
            .map_err(StoreError::Connect)?;
        let result = migrate_and_analyze(&pool).await;
        pool.close().await;
        result
    }

    /// A store whose connections open on first use, on the async runtime of the caller.
    /// Each HTTP worker thread makes its own, so that a query's I/O is driven by the
    /// thread that waits for it rather than bounced through another runtime.
    pub fn store(&self, share: u32) -> Store {
        Store {
            services_per_namespace: self.services_per_namespace,
            services_per_team: self.services_per_team,
            pool: self
                .pool(share)
                // Opened in the background now rather than during the first burst.
                .min_connections(share)
                .connect_lazy_with(self.bounded_options()),
        }
    }

    /// Every statement, lock wait and idle transaction is bounded, so that a stuck query
    /// or a row lock held elsewhere fails its request (503, try again) instead of holding
    /// a connection and the caller indefinitely.
    fn bounded_options(&self) -> PgConnectOptions {
        self.options.clone().options([
            ("statement_timeout", "30s"),
            ("lock_timeout", "5s"),
            ("idle_in_transaction_session_timeout", "60s"),
        ])
    }

    fn pool(&self, max_connections: u32) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(std::time::Duration::from_secs(5))
            // A ping before every query would double the round trips; a broken
            // connection fails its query and is replaced instead.
            .test_before_acquire(false)
    }

    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }
}

/// Applies pending migrations and, when one was applied, refreshes the planner's
/// statistics: a migration may rewrite or fill tables and build indexes, and until
/// autoanalyze notices, plans are made for the table as it was. Our listing statements
/// do not depend on statistics; everything else still does.
async fn migrate_and_analyze(pool: &PgPool) -> Result<(), StoreError> {
    let before = applied_migrations(pool).await?;
    sqlx::migrate!()
        .run(pool)
        .await
        .map_err(StoreError::Migrate)?;
    if applied_migrations(pool).await? != before {
        sqlx::query("ANALYZE external_services, outbox, service_health, health_transitions, teams, team_namespaces, api_tokens")
            .execute(pool)
            .await
            .map_err(StoreError::RefreshStatistics)?;
    }
    Ok(())
}

/// How many migrations the database records as applied (none before the first run).
async fn applied_migrations(pool: &PgPool) -> Result<i64, StoreError> {
    let recorded: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(StoreError::RefreshStatistics)?;
    if !recorded {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .map_err(StoreError::RefreshStatistics)
}

/// Whether `url` says which TLS mode to use (`sslmode` or sqlx's `ssl-mode`).
fn names_ssl_mode(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.starts_with("sslmode=") || pair.starts_with("ssl-mode="))
    })
}

/// A Unix socket directory or a loopback host: nothing on the way for TLS to protect.
fn is_local(host: &str) -> bool {
    host.starts_with('/')
        || host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The database, seen through one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    services_per_namespace: u32,
    services_per_team: u32,
}

impl Store {
    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(StoreError::Ping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_required_unless_the_url_says_otherwise_or_the_database_is_local() {
        let mode = |url: &str| Database::new(url, 1).map(|db| db.options.get_ssl_mode());
        assert!(matches!(
            mode("postgres://u:p@db.example.com/extsvc"),
            Ok(PgSslMode::Require)
        ));
        assert!(matches!(
            mode("postgres://u:p@db.example.com/extsvc?sslmode=verify-full"),
            Ok(PgSslMode::VerifyFull)
        ));
        assert!(matches!(
            mode("postgres://u:p@db.example.com/extsvc?sslmode=disable"),
            Ok(PgSslMode::Disable)
        ));
        for local in [
            "postgres://u@127.0.0.1:5432/extsvc",
            "postgres://u@localhost/extsvc",
            "postgres://u@[::1]:5432/extsvc",
        ] {
            assert!(!matches!(mode(local), Ok(PgSslMode::Require)), "{local}");
        }
    }
}
