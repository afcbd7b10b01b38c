//! Every request gets an id (`X-Request-Id`, the caller's own when it sends a sane one),
//! echoed and logged; every write and every refused attempt is recorded in the audit
//! log before the answer leaves, and `GET /api/v1/audit` reads it back.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::domain::DnsLabel;
use crate::store::{AuditQuery, AuditRecord, NewAuditRecord, Store};

use super::caller::Authenticated;
use super::dry_run::DryRun;
use super::paging::limit;
use super::rate_limit::Allowance;
use super::{ApiError, Problem};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID: usize = 128;
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;

/// The generation of the registration a write touched, before and after it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Generations {
    pub before: Option<i64>,
    pub after: Option<i64>,
}

impl Generations {
    pub fn created(generation: i64) -> Self {
        Self {
            before: None,
            after: Some(generation),
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/audit")
            .route(web::get().to(list_audit))
            .default_service(super::method_not_allowed("GET")),
    );
}

/// Wraps every request: its id, its `RateLimit-*` headers, and its audit entry.
pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| sane_request_id(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.call(request).instrument(span.clone()).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let allowance = response.request().extensions().get::<Allowance>().copied();
    if let Some(allowance) = allowance {
        let headers = response.headers_mut();
        for (name, value) in [
            ("ratelimit-limit", allowance.limit.into()),
            ("ratelimit-remaining", allowance.remaining.into()),
            ("ratelimit-reset", allowance.reset),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
    if let Some(record) = audit_record(&response, id) {
        let store = response.request().app_data::<web::Data<Store>>().cloned();
        if let Some(store) = store
            && let Err(error) = store.record_audit(&record).instrument(span).await
        {
            tracing::error!(error = %crate::telemetry::chain(&error), "could not record an audit entry");
        }
    }
    Ok(response)
}

/// A request id from the caller is kept when it is short and plain.
fn sane_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// What to record about a finished request: every write, and every refusal.
fn audit_record<B>(response: &ServiceResponse<B>, request_id: String) -> Option<NewAuditRecord> {
    let request = response.request();
    let problem = response
        .response()
        .error()
        .and_then(|error| error.as_error::<ApiError>());
    let refused = problem.is_some_and(ApiError::is_refusal);
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !write && !refused {
        return None;
    }
    let status = response.status();
    let caller = request.extensions().get::<Caller>().cloned();
    let generations = response
        .response()
        .extensions()
        .get::<Generations>()
        .copied()
        .unwrap_or_default();
    let part = |key| request.match_info().get(key).map(str::to_owned);
    Some(NewAuditRecord {
        request_id,
        actor: caller
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |c| c.actor.to_string()),
        team: caller.as_ref().and_then(|c| c.team().map(str::to_owned)),
        method: request.method().to_string(),
        path: request.path().chars().take(1024).collect(),
        namespace: part("namespace"),
        name: part("name").or_else(|| part("team")),
        generation_before: generations.before,
        generation_after: generations.after,
        status: status.as_u16(),
        outcome: match problem {
            Some(error) => error.slug().to_owned(),
            None if response.response().extensions().get::<DryRun>().is_some() => {
                "dry-run".to_owned()
            }
            None if status.is_success() => "ok".to_owned(),
            None => status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "-"),
        },
    })
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The request's `X-Request-Id`.
    pub request_id: String,
    /// `platform-admin`, `token:<id>`, `oidc:<issuer>#<subject>`,
    /// `system:serviceaccount:<namespace>:<name>`, or `anonymous`.
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The service or team the request named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_before: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_after: Option<i64>,
    pub status: u16,
    /// `ok`, or the problem type's last segment (`forbidden`, `not-found`, ...).
    pub outcome: String,
}

impl From<AuditRecord> for AuditEntry {
    fn from(record: AuditRecord) -> Self {
        Self {
            id: record.id,
            at: record.at,
            request_id: record.request_id,
            actor: record.actor,
            team: record.team,
            method: record.method,
            path: record.path,
            namespace: record.namespace,
            name: record.name,
            generation_before: record.generation_before,
            generation_after: record.generation_after,
            status: u16::try_from(record.status).unwrap_or_default(),
            outcome: record.outcome,
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditEntry>,
    /// Pass as `continue` for the next (older) page; absent on the last.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this team's entries (a team's admin must name its team).
    #[param(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    team: Option<String>,
    /// Only entries about this namespace.
    #[param(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    namespace: Option<String>,
    /// Only entries from this time on (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Entries per page, 1-500 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The `continue` of the previous page.
    #[serde(rename = "continue")]
    #[param(rename = "continue", pattern = "^[0-9]{1,19}$")]
    continue_token: Option<String>,
}

/// Read the audit log
///
/// The platform admin reads every entry; a team's admin reads its team's (`team` must
/// name it).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "Entries, newest first", body = AuditList),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_audit(
    caller: Authenticated,
    params: web::Query<AuditParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    for (parameter, value) in [("team", &params.team), ("namespace", &params.namespace)] {
        if let Some(value) = value {
            DnsLabel::parse(value).map_err(|e| ApiError::BadParameter {
                parameter,
                detail: e.to_string(),
            })?;
        }
    }
    caller
        .0
        .may_read_audit(params.team.as_deref())
        .map_err(|refusal| ApiError::refused(refusal, "", ""))?;
    let since = params
        .since
        .as_deref()
        .map(DateTime::parse_from_rfc3339)
        .transpose()
        .map_err(|e| ApiError::BadParameter {
            parameter: "since",
            detail: format!("must be an RFC 3339 time: {e}"),
        })?
        .map(|at| at.with_timezone(&Utc));
    let before = params
        .continue_token
        .as_deref()
        .map(str::parse::<i64>)
        .transpose()
        .map_err(|_| ApiError::BadParameter {
            parameter: "continue",
            detail: "is not a token from a previous page".to_owned(),
        })?;
    let limit = limit(params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let mut records = store
        .list_audit(&AuditQuery {
            team: params.team.as_deref(),
            namespace: params.namespace.as_deref(),
            since,
            before,
            limit: limit + 1,
        })
        .await
        .map_err(ApiError::Store)?;
    let more = records.len() as i64 > limit;
    records.truncate(limit as usize);
    let continue_token = records
        .last()
        .filter(|_| more)
        .map(|last| last.id.to_string());
    Ok(HttpResponse::Ok().json(AuditList {
        items: records.into_iter().map(AuditEntry::from).collect(),
        continue_token,
    }))
}

/// Drops entries older than `retention`, hourly, until `shutdown`.
pub async fn prune(
    store: Store,
    retention: chrono::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let every = std::time::Duration::from_secs(3600);
    super::keep_pruning(every, retention, shutdown, "the audit log", |cutoff| {
        let store = store.clone();
        async move { store.prune_audit(cutoff).await }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        assert!(sane_request_id("3f2c-41_a.b:c"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("a b"));
        assert!(!sane_request_id("a\u{7f}"));
        assert!(!sane_request_id(&"a".repeat(MAX_REQUEST_ID + 1)));
    }
}
