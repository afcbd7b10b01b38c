//! Registrations and the outbox rows written with every change to them.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::{LabelSelector, Registration};
use crate::resource::{
    DocumentMetadata, DocumentStatus, ExternalServiceDocument, ExternalServiceSpec,
    ExternalServiceStatus, Origin,
};

use super::{Store, StoreError};

/// A registration as stored.
#[derive(Debug, Clone)]
pub struct StoredService {
    pub uid: Uuid,
    pub namespace: String,
    pub name: String,
    pub labels: Json<BTreeMap<String, String>>,
    pub annotations: Json<BTreeMap<String, String>>,
    pub spec: Json<ExternalServiceSpec>,
    pub generation: i64,
    pub resource_version: i64,
    pub created_at: DateTime<Utc>,
    /// `api` or `cluster`.
    pub origin: String,
    pub mirrored_generation: Option<i64>,
    pub mirror_error: Option<String>,
    pub status: Option<Json<ExternalServiceStatus>>,
}

impl StoredService {
    pub fn origin(&self) -> Origin {
        if self.origin == "cluster" {
            Origin::Cluster
        } else {
            Origin::Api
        }
    }

    /// The document as the API shows it.
    pub fn into_document(self) -> ExternalServiceDocument {
        let origin = self.origin();
        ExternalServiceDocument {
            api_version: crate::resource::API_VERSION.to_owned(),
            kind: crate::resource::KIND.to_owned(),
            metadata: DocumentMetadata {
                name: Some(self.name),
                namespace: Some(self.namespace),
                labels: self.labels.0,
                annotations: self.annotations.0,
                uid: Some(self.uid.to_string()),
                generation: Some(self.generation),
                resource_version: Some(self.resource_version.to_string()),
                creation_timestamp: Some(
                    self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                ),
            },
            spec: self.spec.0,
            status: Some(DocumentStatus {
                origin,
                mirrored_generation: self.mirrored_generation,
                mirror_error: self.mirror_error,
                cluster: self.status.map(|status| status.0),
            }),
        }
    }

    fn same_content(&self, registration: &Registration) -> bool {
        self.spec.0 == *registration.spec()
            && self.labels.0 == *registration.labels()
            && self.annotations.0 == *registration.annotations()
    }
}

/// Whether a write is kept, or only tried: a dry run does everything a write does (the
/// caps, the preconditions, the new generation) in a transaction it then rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Yes,
    DryRun,
}

/// A write's condition on the current version (from `If-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// `*`: the registration must exist.
    Exists,
    /// The current resource version must be one of these.
    VersionIn(Vec<i64>),
}

impl Precondition {
    fn allows(&self, current: Option<&StoredService>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Self::Exists, Some(_)) => true,
            (Self::VersionIn(versions), Some(current)) => {
                versions.contains(&current.resource_version)
            }
        }
    }
}

/// What a create-or-replace did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Created,
    Replaced,
    /// The stored registration already said exactly this; nothing was written.
    Unchanged,
}

/// The result of a write, with the registration as it now stands.
#[derive(Debug, Clone)]
pub struct Stored {
    pub service: StoredService,
    pub outcome: WriteOutcome,
    /// The generation before the write; `None` when it created the registration.
    pub previous_generation: Option<i64>,
}

/// One page of a listing, in (namespace, name) order.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    /// Every namespace when absent.
    pub namespace: Option<&'a str>,
    /// The last (namespace, name) of the previous page.
    pub after: Option<(String, String)>,
    pub selector: &'a LabelSelector,
    pub limit: i64,
}

impl Store {
    pub async fn get_service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<StoredService, StoreError> {
        sqlx::query_as!(
            StoredService,
            r#"SELECT uid, namespace, name,
                      labels AS "labels: Json<BTreeMap<String, String>>",
                      annotations AS "annotations: Json<BTreeMap<String, String>>",
                      spec AS "spec: Json<ExternalServiceSpec>",
                      generation, resource_version, created_at,
                      origin, mirrored_generation, mirror_error,
                      status AS "status: Json<ExternalServiceStatus>"
               FROM external_services WHERE namespace = $1 AND name = $2"#,
            namespace,
            name
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::ReadService)?
        .ok_or(StoreError::NotFound)
    }

    /// A page of registrations. Keyset pagination: a page starts strictly after the last
    /// item of the previous one, so a walk sees every item that existed throughout it
    /// exactly once, whatever is added or removed meanwhile.
    ///
    /// Each shape (one namespace or all, a selector an index can serve or not) has its
    /// own statement, so that its plan never depends on fresh statistics: after a bulk
    /// import, before autoanalyze has run, a plan that sorts the whole table costs
    /// a thousand times more than the page (see `queries/`).
    pub async fn list_services(
        &self,
        query: &ListQuery<'_>,
    ) -> Result<Vec<StoredService>, StoreError> {
        let Some((after_namespace, after_name)) = page_start(query.namespace, &query.after) else {
            return Ok(Vec::new());
        };
        let conjuncts = query.selector.conjuncts();
        let excluded: Vec<Json<&BTreeMap<String, String>>> =
            conjuncts.excluded.iter().map(Json).collect();
        let rows = if !conjuncts.is_indexable() {
            match query.namespace {
                Some(_) => {
                    sqlx::query_file_as!(
                        StoredService,
                        "src/store/queries/list_services_in_namespace.sql",
                        after_namespace,
                        after_name,
                        &conjuncts.absent,
                        &excluded as _,
                        query.limit
                    )
                    .fetch_all(&self.pool)
                    .await
                }
                None => {
                    sqlx::query_file_as!(
                        StoredService,
                        "src/store/queries/list_services.sql",
                        after_namespace,
                        after_name,
                        &conjuncts.absent,
                        &excluded as _,
                        query.limit
                    )
                    .fetch_all(&self.pool)
                    .await
                }
            }
        } else {
            let any_of = if conjuncts.any_of.is_empty() {
                None
            } else {
                Some(serde_json::to_value(&conjuncts.any_of).map_err(StoreError::DecodeDocument)?)
            };
            match query.namespace {
                Some(_) => {
                    sqlx::query_file_as!(
                        StoredService,
                        "src/store/queries/select_services_in_namespace.sql",
                        after_namespace,
                        after_name,
                        Json(&conjuncts.equal) as _,
                        &conjuncts.present,
                        &conjuncts.absent,
                        &excluded as _,
                        any_of,
                        query.limit
                    )
                    .fetch_all(&self.pool)
                    .await
                }
                None => {
                    sqlx::query_file_as!(
                        StoredService,
                        "src/store/queries/select_services.sql",
                        after_namespace,
                        after_name,
                        Json(&conjuncts.equal) as _,
                        &conjuncts.present,
                        &conjuncts.absent,
                        &excluded as _,
                        any_of,
                        query.limit
                    )
                    .fetch_all(&self.pool)
                    .await
                }
            }
        };
        rows.map_err(StoreError::ListServices)
    }

    /// Creates a registration; fails if the name is taken.
    pub async fn create_service(
        &self,
        registration: &Registration,
        commit: Commit,
    ) -> Result<StoredService, StoreError> {
        let mut tx = self.begin().await?;
        let created = self
            .insert(&mut tx, registration)
            .await?
            .ok_or(StoreError::AlreadyExists)?;
        record_change(&mut tx, &created, Operation::Apply).await?;
        finish(tx, commit).await?;
        Ok(created)
    }

    /// Creates or replaces a registration. The same content twice writes nothing; a
    /// change bumps the resource version, and the generation only when `spec` changed.
    pub async fn put_service(
        &self,
        registration: &Registration,
        precondition: Option<&Precondition>,
        commit: Commit,
    ) -> Result<Stored, StoreError> {
        let key = registration.key();
        // Two passes at most: when a concurrent create wins the race for the name after
        // our lock found nothing, the second pass replaces what it created.
        for _ in 0..2 {
            let mut tx = self.begin().await?;
            let current = lock(&mut tx, key.namespace.as_ref(), key.name.as_ref()).await?;
            if current
                .as_ref()
                .is_some_and(|c| c.origin() == Origin::Cluster)
            {
                return Err(StoreError::ReadOnly);
            }
            if let Some(precondition) = precondition
                && !precondition.allows(current.as_ref())
            {
                return Err(StoreError::PreconditionFailed);
            }
            let previous_generation = current.as_ref().map(|c| c.generation);
            let (service, outcome) = match current {
                Some(current) if current.same_content(registration) => {
                    (current, WriteOutcome::Unchanged)
                }
                Some(current) => (
                    replace(&mut tx, &current, registration).await?,
                    WriteOutcome::Replaced,
                ),
                None => match self.insert(&mut tx, registration).await? {
                    Some(created) => (created, WriteOutcome::Created),
                    None => continue,
                },
            };
            if outcome != WriteOutcome::Unchanged {
                record_change(&mut tx, &service, Operation::Apply).await?;
            }
            finish(tx, commit).await?;
            return Ok(Stored {
                service,
                outcome,
                previous_generation,
            });
        }
        Err(StoreError::Contended)
    }

    /// Deletes a registration, returning it as it was.
    pub async fn delete_service(
        &self,
        namespace: &str,
        name: &str,
        precondition: Option<&Precondition>,
        commit: Commit,
    ) -> Result<StoredService, StoreError> {
        let mut tx = self.begin().await?;
        let current = lock(&mut tx, namespace, name)
            .await?
            .ok_or(StoreError::NotFound)?;
        if current.origin() == Origin::Cluster {
            return Err(StoreError::ReadOnly);
        }
        if let Some(precondition) = precondition
            && !precondition.allows(Some(&current))
        {
            return Err(StoreError::PreconditionFailed);
        }
        sqlx::query!("DELETE FROM external_services WHERE uid = $1", current.uid)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::WriteService)?;
        record_change(&mut tx, &current, Operation::Delete).await?;
        finish(tx, commit).await?;
        Ok(current)
    }

    /// Inserts a new registration unless its namespace or the team that owns it is full;
    /// `None` when the name is taken. Concurrent creates may each see room for one more,
    /// so a cap can be passed by at most the number of writers at that moment.
    async fn insert(
        &self,
        conn: &mut PgConnection,
        registration: &Registration,
    ) -> Result<Option<StoredService>, StoreError> {
        let limit = self.services_per_namespace;
        let full = sqlx::query_scalar!(
            r#"SELECT count(*) >= $2 AS "full!" FROM (
                   SELECT FROM external_services WHERE namespace = $1 LIMIT $2
               ) AS registered"#,
            registration.key().namespace.as_ref(),
            i64::from(limit),
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::WriteService)?;
        if full {
            return Err(StoreError::NamespaceFull { limit });
        }
        if let Some(owner) = Self::owner_of(conn, registration.key().namespace.as_ref()).await? {
            let limit = owner
                .max_services
                .map_or(self.services_per_team, |own| own.unsigned_abs());
            let full = sqlx::query_scalar!(
                r#"SELECT count(*) >= $2 AS "full!" FROM (
                       SELECT FROM external_services e JOIN team_namespaces n
                       ON n.namespace = e.namespace WHERE n.team = $1 LIMIT $2
                   ) AS registered"#,
                owner.team,
                i64::from(limit),
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::WriteService)?;
            if full {
                return Err(StoreError::TeamFull {
                    team: owner.team,
                    limit,
                });
            }
        }
        insert(conn, registration).await
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(StoreError::WriteService)
    }
}

/// Where a page starts: strictly after this (namespace, name). For one namespace, a
/// token from before it starts at its beginning, and `None` says that a token from
/// after it leaves nothing to list.
pub(super) fn page_start<'a>(
    namespace: Option<&'a str>,
    after: &'a Option<(String, String)>,
) -> Option<(&'a str, &'a str)> {
    let after = after
        .as_ref()
        .map(|(ns, name)| (ns.as_str(), name.as_str()));
    match (namespace, after) {
        (None, after) => Some(after.unwrap_or(("", ""))),
        (Some(namespace), Some((ns, name))) if ns == namespace => Some((namespace, name)),
        (Some(namespace), Some((ns, _))) if ns > namespace => None,
        (Some(namespace), _) => Some((namespace, "")),
    }
}

async fn finish(tx: Transaction<'static, Postgres>, commit: Commit) -> Result<(), StoreError> {
    match commit {
        Commit::Yes => tx.commit().await,
        Commit::DryRun => tx.rollback().await,
    }
    .map_err(StoreError::WriteService)
}

async fn lock(
    conn: &mut PgConnection,
    namespace: &str,
    name: &str,
) -> Result<Option<StoredService>, StoreError> {
    sqlx::query_as!(
        StoredService,
        r#"SELECT uid, namespace, name,
                  labels AS "labels: Json<BTreeMap<String, String>>",
                  annotations AS "annotations: Json<BTreeMap<String, String>>",
                  spec AS "spec: Json<ExternalServiceSpec>",
                  generation, resource_version, created_at,
                  origin, mirrored_generation, mirror_error,
                  status AS "status: Json<ExternalServiceStatus>"
           FROM external_services WHERE namespace = $1 AND name = $2
           FOR UPDATE"#,
        namespace,
        name
    )
    .fetch_optional(conn)
    .await
    .map_err(StoreError::ReadService)
}

/// Inserts a new registration; `None` when the name is taken.
async fn insert(
    conn: &mut PgConnection,
    registration: &Registration,
) -> Result<Option<StoredService>, StoreError> {
    let key = registration.key();
    sqlx::query_as!(
        StoredService,
        r#"INSERT INTO external_services (namespace, name, labels, annotations, spec)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (namespace, name) DO NOTHING
           RETURNING uid, namespace, name,
                  labels AS "labels: Json<BTreeMap<String, String>>",
                  annotations AS "annotations: Json<BTreeMap<String, String>>",
                  spec AS "spec: Json<ExternalServiceSpec>",
                  generation, resource_version, created_at,
                  origin, mirrored_generation, mirror_error,
                  status AS "status: Json<ExternalServiceStatus>""#,
        key.namespace.as_ref(),
        key.name.as_ref(),
        Json(registration.labels()) as _,
        Json(registration.annotations()) as _,
        Json(registration.spec()) as _,
    )
    .fetch_optional(conn)
    .await
    .map_err(StoreError::WriteService)
}

async fn replace(
    conn: &mut PgConnection,
    current: &StoredService,
    registration: &Registration,
) -> Result<StoredService, StoreError> {
    let spec_changed = current.spec.0 != *registration.spec();
    sqlx::query_as!(
        StoredService,
        r#"UPDATE external_services
           SET labels = $2, annotations = $3, spec = $4,
               generation = generation + $5,
               resource_version = nextval('resource_version_seq'),
               updated_at = now()
           WHERE uid = $1
           RETURNING uid, namespace, name,
                  labels AS "labels: Json<BTreeMap<String, String>>",
                  annotations AS "annotations: Json<BTreeMap<String, String>>",
                  spec AS "spec: Json<ExternalServiceSpec>",
                  generation, resource_version, created_at,
                  origin, mirrored_generation, mirror_error,
                  status AS "status: Json<ExternalServiceStatus>""#,
        current.uid,
        Json(registration.labels()) as _,
        Json(registration.annotations()) as _,
        Json(registration.spec()) as _,
        i64::from(spec_changed),
    )
    .fetch_one(conn)
    .await
    .map_err(StoreError::WriteService)
}

#[derive(Debug, Clone, Copy)]
enum Operation {
    Apply,
    Delete,
}

async fn record_change(
    conn: &mut PgConnection,
    service: &StoredService,
    operation: Operation,
) -> Result<(), StoreError> {
    let operation = match operation {
        Operation::Apply => "apply",
        Operation::Delete => "delete",
    };
    sqlx::query!(
        "INSERT INTO outbox (service_uid, namespace, name, operation, generation, resource_version)
         VALUES ($1, $2, $3, $4, $5, $6)",
        service.uid,
        service.namespace,
        service.name,
        operation,
        service.generation,
        service.resource_version,
    )
    .execute(conn)
    .await
    .map(drop)
    .map_err(StoreError::RecordChange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_starts_after_the_token_but_never_outside_its_namespace() {
        let token = |ns: &str, name: &str| Some((ns.to_owned(), name.to_owned()));
        assert_eq!(page_start(None, &None), Some(("", "")));
        assert_eq!(page_start(None, &token("b", "x")), Some(("b", "x")));
        assert_eq!(page_start(Some("b"), &None), Some(("b", "")));
        assert_eq!(page_start(Some("b"), &token("b", "x")), Some(("b", "x")));
        assert_eq!(page_start(Some("b"), &token("a", "x")), Some(("b", "")));
        assert_eq!(page_start(Some("b"), &token("c", "x")), None);
    }
}
