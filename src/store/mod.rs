//! PostgreSQL: the only place that speaks SQL.

mod health;
mod mirror;
mod services;

pub use mirror::{Change, ClusterService};
pub use services::{ListQuery, Precondition, Stored, StoredService, WriteOutcome};

use std::str::FromStr;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a registration with this name already exists")]
    AlreadyExists,
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
    #[error("could not write health")]
    WriteHealth(#[source] sqlx::Error),
    #[error("could not read health")]
    ReadHealth(#[source] sqlx::Error),
    #[error("a stored document does not decode")]
    DecodeDocument(#[source] serde_json::Error),
}

/// Where the database is and how many connections a pool may open.
#[derive(Clone, Debug)]
pub struct Database {
    options: PgConnectOptions,
    max_connections: u32,
}

impl Database {
    pub fn new(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        Ok(Self {
            options,
            max_connections,
        })
    }

    /// Applies pending migrations, on a connection of its own.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let pool = self
            .pool(1)
            .connect_with(self.options.clone())
            .await
            .map_err(StoreError::Connect)?;
        let result = sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(StoreError::Migrate);
        pool.close().await;
        result
    }

    /// A store whose connections open on first use, on the async runtime of the caller.
    /// Each HTTP worker thread makes its own, so that a query's I/O is driven by the
    /// thread that waits for it rather than bounced through another runtime.
    pub fn store(&self, share: u32) -> Store {
        Store {
            pool: self
                .pool(share)
                // Opened in the background now rather than during the first burst.
                .min_connections(share)
                .connect_lazy_with(self.options.clone()),
        }
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

/// The database, seen through one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
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
