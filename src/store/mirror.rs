//! What the mirror reads and records: the outbox, which generation reached the cluster,
//! the status published there, and copies of `ExternalService`s made in the cluster.

use std::collections::BTreeMap;

use sqlx::types::Json;

use crate::resource::{ExternalServiceSpec, ExternalServiceStatus};

use super::{Store, StoreError};

/// A registration that changed: the outbox rows of one name, up to `last_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub namespace: String,
    pub name: String,
    pub last_id: i64,
    /// The registrations of this name that these rows delete: the only ones whose
    /// `ExternalService` the mirror may delete.
    pub deleted: Vec<uuid::Uuid>,
}

/// An `ExternalService` made in the cluster, as the API shows it (read-only).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterService<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: i64,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub spec: &'a ExternalServiceSpec,
}

impl Store {
    /// The identity of the installation this database belongs to.
    pub async fn installation(&self) -> Result<uuid::Uuid, StoreError> {
        sqlx::query_scalar!("SELECT id FROM installation")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::ReadInstallation)
    }

    /// The names with outbox rows due now, oldest first, in one namespace or all. A row
    /// that failed waits until its `next_attempt_at`, so that rows which keep failing do
    /// not fill every batch.
    pub async fn pending_changes(
        &self,
        namespace: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Change>, StoreError> {
        sqlx::query_as!(
            Change,
            r#"SELECT namespace, name, max(id) AS "last_id!",
                      coalesce(array_agg(service_uid) FILTER (WHERE operation = 'delete'),
                               '{}') AS "deleted!"
               FROM (SELECT id, namespace, name, operation, service_uid FROM outbox
                     WHERE next_attempt_at <= now() AND ($1::text IS NULL OR namespace = $1)
                     ORDER BY id LIMIT $2) AS oldest
               GROUP BY namespace, name
               ORDER BY min(id)"#,
            namespace,
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ReadOutbox)
    }

    /// Records that a change could not reach the cluster: its rows wait 5 s after the
    /// first failure, doubling up to 10 minutes.
    pub async fn postpone_change(&self, change: &Change, error: &str) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE outbox
             SET attempts = attempts + 1,
                 next_attempt_at = now() + least(interval '5 seconds' * 2 ^ least(attempts, 20),
                                                 interval '10 minutes'),
                 last_error = $4
             WHERE namespace = $1 AND name = $2 AND id <= $3",
            change.namespace,
            change.name,
            change.last_id,
            error
        )
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(StoreError::ReadOutbox)
    }

    /// Whether a change of `namespace/name` has yet to reach the cluster.
    pub async fn pending_change(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT FROM outbox WHERE namespace = $1 AND name = $2) AS "pending!""#,
            namespace,
            name
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::ReadOutbox)
    }

    /// Drops the outbox rows of a change once the cluster has it.
    pub async fn forget_change(&self, change: &Change) -> Result<(), StoreError> {
        sqlx::query!(
            "DELETE FROM outbox WHERE namespace = $1 AND name = $2 AND id <= $3",
            change.namespace,
            change.name,
            change.last_id
        )
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(StoreError::ReadOutbox)
    }

    /// Records the outcome of writing a registration's generation to the cluster.
    pub async fn record_mirrored(
        &self,
        uid: uuid::Uuid,
        generation: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE external_services
             SET mirrored_generation = coalesce($2, mirrored_generation), mirror_error = $3
             WHERE uid = $1
               AND (mirrored_generation IS DISTINCT FROM coalesce($2, mirrored_generation)
                    OR mirror_error IS DISTINCT FROM $3)",
            uid,
            generation,
            error
        )
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(StoreError::WriteService)
    }

    /// Copies the status the controller published, when it differs.
    pub async fn record_status(
        &self,
        namespace: &str,
        name: &str,
        status: Option<&ExternalServiceStatus>,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE external_services SET status = $3
             WHERE namespace = $1 AND name = $2 AND status IS DISTINCT FROM $3",
            namespace,
            name,
            status.map(Json) as _
        )
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(StoreError::WriteService)
    }

    /// Creates or updates the read-only copy of an `ExternalService` made in the cluster.
    /// A registration made through the API with that name is left alone.
    pub async fn put_cluster_service(
        &self,
        service: &ClusterService<'_>,
    ) -> Result<(), StoreError> {
        let uid = uuid::Uuid::parse_str(service.uid).unwrap_or_else(|_| uuid::Uuid::new_v4());
        sqlx::query!(
            r#"INSERT INTO external_services
                   (uid, namespace, name, labels, annotations, spec, generation, origin)
               VALUES ($1, $2, $3, $4, $5, $6, $7, 'cluster')
               ON CONFLICT (namespace, name) DO UPDATE
               SET labels = excluded.labels, annotations = excluded.annotations,
                   spec = excluded.spec, generation = excluded.generation,
                   resource_version = nextval('resource_version_seq'), updated_at = now()
               WHERE external_services.origin = 'cluster'
                 AND (external_services.labels, external_services.annotations,
                      external_services.spec, external_services.generation)
                     IS DISTINCT FROM
                     (excluded.labels, excluded.annotations, excluded.spec, excluded.generation)"#,
            uid,
            service.namespace,
            service.name,
            Json(service.labels) as _,
            Json(service.annotations) as _,
            Json(service.spec) as _,
            service.generation,
        )
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(StoreError::WriteService)
    }

    /// Forgets the copy of an `ExternalService` deleted from the cluster.
    pub async fn delete_cluster_service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "DELETE FROM external_services WHERE namespace = $1 AND name = $2 AND origin = 'cluster'",
            namespace,
            name
        )
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(StoreError::WriteService)
    }

    /// Every (namespace, name) stored, in one namespace or all, for a full comparison
    /// with the cluster.
    pub async fn service_keys(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query!(
            "SELECT namespace, name FROM external_services
             WHERE $1::text IS NULL OR namespace = $1
             ORDER BY namespace, name",
            namespace
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ListServices)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.namespace, row.name))
            .collect())
    }

    /// The registration of `namespace/name`, if any.
    pub async fn find_service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<super::StoredService>, StoreError> {
        match self.get_service(namespace, name).await {
            Ok(service) => Ok(Some(service)),
            Err(StoreError::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }
}
