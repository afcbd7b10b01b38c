//! PostgreSQL: the only place that speaks SQL.

mod services;

pub use services::{ListQuery, Precondition, Stored, StoredService, WriteOutcome};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a registration with this name already exists")]
    AlreadyExists,
    #[error("no registration with this name exists")]
    NotFound,
    #[error("the registration changed since the version the request was based on")]
    PreconditionFailed,
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
    #[error("a stored document does not decode")]
    DecodeDocument(#[source] serde_json::Error),
}

/// The database, with its schema up to date.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects and applies pending migrations.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(database_url)
            .await
            .map_err(StoreError::Connect)?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(Self { pool })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(StoreError::Ping)
    }
}
