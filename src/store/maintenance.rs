//! Maintenance windows: addresses of a registration out of rotation until a time.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::resource::MaintenanceWindow;

use super::{Store, StoreError};

/// A maintenance window as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWindow {
    pub namespace: String,
    pub name: String,
    pub address: String,
    pub reason: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub actor: String,
}

impl StoredWindow {
    pub fn into_window(self) -> MaintenanceWindow {
        MaintenanceWindow {
            address: self.address,
            reason: self.reason,
            since: self.since.to_rfc3339_opts(SecondsFormat::Secs, true),
            until: self.until.to_rfc3339_opts(SecondsFormat::Secs, true),
            by: self.actor,
        }
    }
}

impl Store {
    /// Starts (or moves) maintenance windows on addresses of a registration, all or none.
    pub async fn start_maintenance(
        &self,
        namespace: &str,
        name: &str,
        addresses: &[String],
        reason: &str,
        until: DateTime<Utc>,
        actor: &str,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO maintenance_windows (namespace, name, address, reason, until, actor)
             SELECT $1, $2, address, $4, $5, $6 FROM unnest($3::text[]) AS address
             ON CONFLICT (namespace, name, address) DO UPDATE
             SET reason = excluded.reason, until = excluded.until, actor = excluded.actor,
                 since = now()",
            namespace,
            name,
            addresses,
            reason,
            until,
            actor
        )
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => StoreError::WriteMaintenance(error),
        })
    }

    /// Ends the windows on `address` (all of them when `None`) of a registration.
    pub async fn end_maintenance(
        &self,
        namespace: &str,
        name: &str,
        address: Option<&str>,
    ) -> Result<u64, StoreError> {
        sqlx::query!(
            "DELETE FROM maintenance_windows
             WHERE namespace = $1 AND name = $2 AND ($3::text IS NULL OR address = $3)",
            namespace,
            name,
            address
        )
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(StoreError::WriteMaintenance)
    }

    /// Windows in force, of one registration or (with `None`) of all, in address order.
    pub async fn maintenance(
        &self,
        service: Option<(&str, &str)>,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let (namespace, name) = service.unzip();
        sqlx::query_as!(
            StoredWindow,
            "SELECT namespace, name, address, reason, since, until, actor
             FROM maintenance_windows
             WHERE until > now() AND ($1::text IS NULL OR (namespace = $1 AND name = $2))
             ORDER BY namespace, name, address",
            namespace,
            name
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ReadMaintenance)
    }

    /// Deletes the windows whose time has passed (each deletion is an event); how many.
    pub async fn expire_maintenance(&self) -> Result<u64, StoreError> {
        sqlx::query!("DELETE FROM maintenance_windows WHERE until <= now()")
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(StoreError::WriteMaintenance)
    }
}
