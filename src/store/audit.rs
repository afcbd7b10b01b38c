//! The audit log: every write and every refused attempt.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

/// One entry, as recorded.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub request_id: String,
    pub actor: String,
    pub team: Option<String>,
    pub method: String,
    pub path: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub generation_before: Option<i64>,
    pub generation_after: Option<i64>,
    pub status: i32,
    pub outcome: String,
}

/// An entry to record.
#[derive(Debug, Clone, Default)]
pub struct NewAuditRecord {
    pub request_id: String,
    pub actor: String,
    pub team: Option<String>,
    pub method: String,
    pub path: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub generation_before: Option<i64>,
    pub generation_after: Option<i64>,
    pub status: u16,
    pub outcome: String,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    pub team: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    /// Entries older than this id (the previous page's last).
    pub before: Option<i64>,
    pub limit: i64,
}

impl Store {
    pub async fn record_audit(&self, record: &NewAuditRecord) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO audit_log (request_id, actor, team, method, path, namespace, name,
                                    generation_before, generation_after, status, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            record.request_id,
            record.actor,
            record.team,
            record.method,
            record.path,
            record.namespace,
            record.name,
            record.generation_before,
            record.generation_after,
            i32::from(record.status),
            record.outcome
        )
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(StoreError::WriteAudit)
    }

    pub async fn list_audit(&self, query: &AuditQuery<'_>) -> Result<Vec<AuditRecord>, StoreError> {
        sqlx::query_as!(
            AuditRecord,
            "SELECT id, at, request_id, actor, team, method, path, namespace, name,
                    generation_before, generation_after, status, outcome
             FROM audit_log
             WHERE ($1::text IS NULL OR team = $1)
               AND ($2::text IS NULL OR namespace = $2)
               AND ($3::timestamptz IS NULL OR at >= $3)
               AND ($4::bigint IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5",
            query.team,
            query.namespace,
            query.since,
            query.before,
            query.limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ReadAudit)
    }

    /// Drops entries recorded before `cutoff`, a batch at a time; how many went.
    pub async fn prune_audit(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        sqlx::query!(
            "DELETE FROM audit_log WHERE id IN (
                 SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT 10000)",
            cutoff
        )
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(StoreError::WriteAudit)
    }
}
