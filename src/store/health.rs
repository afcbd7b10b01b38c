//! Health reports and transitions, as the leader's probe engine publishes them.

use sqlx::types::Json;

use crate::domain::ServiceKey;
use crate::resource::{HealthState, HealthTransition, ServiceHealth};

use super::services::page_start;
use super::{Store, StoreError};

/// Transitions kept per address.
const KEPT_TRANSITIONS: i64 = 50;

fn state_name(state: HealthState) -> &'static str {
    match state {
        HealthState::Ready => "ready",
        HealthState::NotReady => "notReady",
        HealthState::Unknown => "unknown",
    }
}

fn state_from(name: &str) -> HealthState {
    match name {
        "ready" => HealthState::Ready,
        "notReady" => HealthState::NotReady,
        _ => HealthState::Unknown,
    }
}

impl Store {
    /// Stores the latest report of each service (of services that are registered), and
    /// drops the transitions of addresses that are not in it.
    pub async fn record_health(&self, reports: &[ServiceHealth]) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        let namespaces: Vec<&str> = reports.iter().map(|r| r.namespace.as_str()).collect();
        let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
        let ready: Vec<i32> = reports.iter().map(|r| r.ready_addresses as i32).collect();
        let total: Vec<i32> = reports.iter().map(|r| r.total_addresses as i32).collect();
        let documents: Vec<Json<&ServiceHealth>> = reports.iter().map(Json).collect();
        sqlx::query!(
            r#"INSERT INTO service_health (namespace, name, ready_addresses, total_addresses, report)
               SELECT u.namespace, u.name, u.ready, u.total, u.report
               FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::jsonb[])
                    AS u(namespace, name, ready, total, report)
               JOIN external_services s ON s.namespace = u.namespace AND s.name = u.name
               ON CONFLICT (namespace, name) DO UPDATE
               SET ready_addresses = excluded.ready_addresses,
                   total_addresses = excluded.total_addresses,
                   report = excluded.report, published_at = now()"#,
            &namespaces as &[&str],
            &names as &[&str],
            &ready,
            &total,
            &documents as _,
        )
        .execute(&self.pool)
        .await
        .map_err(StoreError::WriteHealth)?;
        // The history of an address the service no longer has (a spec change, a DNS
        // rotation) goes with it: otherwise a name whose addresses keep changing grows
        // its history without end.
        sqlx::query!(
            r#"DELETE FROM health_transitions t
               USING unnest($1::text[], $2::text[], $3::jsonb[]) AS u(namespace, name, report)
               WHERE t.namespace = u.namespace AND t.name = u.name
                 AND NOT EXISTS (SELECT FROM jsonb_array_elements(u.report -> 'addresses') AS a
                                 WHERE a ->> 'address' = t.address)"#,
            &namespaces as &[&str],
            &names as &[&str],
            &documents as _,
        )
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(StoreError::WriteHealth)
    }

    /// Appends transitions, keeping the last few dozen of each address.
    pub async fn record_transitions(
        &self,
        transitions: &[(ServiceKey, HealthTransition)],
    ) -> Result<(), StoreError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let namespaces: Vec<&str> = transitions
            .iter()
            .map(|(k, _)| k.namespace.as_ref())
            .collect();
        let names: Vec<&str> = transitions.iter().map(|(k, _)| k.name.as_ref()).collect();
        let addresses: Vec<&str> = transitions
            .iter()
            .map(|(_, t)| t.address.as_str())
            .collect();
        let checks: Vec<&str> = transitions.iter().map(|(_, t)| t.check.as_str()).collect();
        let from: Vec<&str> = transitions
            .iter()
            .map(|(_, t)| state_name(t.from))
            .collect();
        let to: Vec<&str> = transitions.iter().map(|(_, t)| state_name(t.to)).collect();
        let errors: Vec<Option<&str>> = transitions
            .iter()
            .map(|(_, t)| t.error.as_deref())
            .collect();
        let times: Vec<&str> = transitions.iter().map(|(_, t)| t.time.as_str()).collect();
        let mut tx = self.pool.begin().await.map_err(StoreError::WriteHealth)?;
        sqlx::query!(
            r#"INSERT INTO health_transitions (namespace, name, address, check_name, from_state, to_state, error, at)
               SELECT u.namespace, u.name, u.address, u.check_name, u.from_state, u.to_state, u.error, u.at::timestamptz
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                    AS u(namespace, name, address, check_name, from_state, to_state, error, at)
               WHERE EXISTS (SELECT 1 FROM external_services s WHERE s.namespace = u.namespace AND s.name = u.name)
               ORDER BY u.at"#,
            &namespaces as &[&str],
            &names as &[&str],
            &addresses as &[&str],
            &checks as &[&str],
            &from as &[&str],
            &to as &[&str],
            &errors as &[Option<&str>],
            &times as &[&str],
        )
        .execute(&mut *tx)
        .await
        .map_err(StoreError::WriteHealth)?;
        sqlx::query!(
            r#"DELETE FROM health_transitions t
               USING (SELECT id, row_number() OVER (PARTITION BY namespace, name, address ORDER BY id DESC) AS age
                      FROM health_transitions
                      WHERE (namespace, name) IN (SELECT * FROM unnest($1::text[], $2::text[]))) ranked
               WHERE t.id = ranked.id AND ranked.age > $3"#,
            &namespaces as &[&str],
            &names as &[&str],
            KEPT_TRANSITIONS,
        )
        .execute(&mut *tx)
        .await
        .map_err(StoreError::WriteHealth)?;
        tx.commit().await.map_err(StoreError::WriteHealth)
    }

    pub async fn health(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ServiceHealth>, StoreError> {
        let row = sqlx::query!(
            r#"SELECT report AS "report: Json<ServiceHealth>" FROM service_health WHERE namespace = $1 AND name = $2"#,
            namespace,
            name
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::ReadHealth)?;
        Ok(row.map(|row| row.report.0))
    }

    /// The last `per_address` transitions of each address of a service, newest first.
    pub async fn health_history(
        &self,
        namespace: &str,
        name: &str,
        per_address: i64,
    ) -> Result<Vec<HealthTransition>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT address, check_name, from_state, to_state, error, at
               FROM (SELECT *, row_number() OVER (PARTITION BY address ORDER BY id DESC) AS age
                     FROM health_transitions WHERE namespace = $1 AND name = $2) recent
               WHERE age <= $3
               ORDER BY id DESC"#,
            namespace,
            name,
            per_address
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::ReadHealth)?;
        Ok(rows
            .into_iter()
            .map(|row| HealthTransition {
                address: row.address,
                check: row.check_name,
                from: state_from(&row.from_state),
                to: state_from(&row.to_state),
                error: row.error,
                time: row.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
            .collect())
    }

    /// Reports of services, in (namespace, name) order after `after`; with `unready`,
    /// only those with an address that is not ready. One statement per shape, each an
    /// index walk that stops at the page size whatever the statistics say.
    pub async fn list_health(
        &self,
        namespace: Option<&str>,
        unready: bool,
        after: Option<(String, String)>,
        limit: i64,
    ) -> Result<Vec<ServiceHealth>, StoreError> {
        let Some((after_namespace, after_name)) = page_start(namespace, &after) else {
            return Ok(Vec::new());
        };
        let reports = match (namespace, unready) {
            (Some(_), false) => {
                sqlx::query_file_scalar!(
                    "src/store/queries/list_health_in_namespace.sql",
                    after_namespace,
                    after_name,
                    limit
                )
                .fetch_all(&self.pool)
                .await
            }
            (None, false) => {
                sqlx::query_file_scalar!(
                    "src/store/queries/list_health.sql",
                    after_namespace,
                    after_name,
                    limit
                )
                .fetch_all(&self.pool)
                .await
            }
            (Some(_), true) => {
                sqlx::query_file_scalar!(
                    "src/store/queries/list_unready_in_namespace.sql",
                    after_namespace,
                    after_name,
                    limit
                )
                .fetch_all(&self.pool)
                .await
            }
            (None, true) => {
                sqlx::query_file_scalar!(
                    "src/store/queries/list_unready.sql",
                    after_namespace,
                    after_name,
                    limit
                )
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(StoreError::ReadHealth)?;
        Ok(reports.into_iter().map(|report| report.0).collect())
    }
}
