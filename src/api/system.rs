//! For whoever runs the server: `/healthz`, `/readyz` and `/metrics`.

use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::metrics::{Exposition, Metrics};
use crate::store::Store;
use crate::sync::lock;

use super::ApiError;
use super::caller::authenticate;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Whether the process still does all it should: a role that must run until shutdown
/// (leader election, and on the leader the mirror, the controller and the health
/// publisher) that ends or panics marks it failed, and `/healthz` then answers 503 so
/// that the kubelet restarts the pod rather than leaving it up and idle.
#[derive(Clone, Debug, Default)]
pub struct Liveness(Arc<Mutex<Option<String>>>);

impl Liveness {
    /// Marks the process failed; the first reason stays.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::error!(%reason, "a role stopped; /healthz now fails");
        lock(&self.0).get_or_insert(reason);
    }

    fn failure(&self) -> Option<String> {
        lock(&self.0).clone()
    }
}

/// The process is up and every role it started still runs
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    responses(
        (status = 200, description = "Up", content_type = "text/plain"),
        (status = 503, description = "A role stopped; the reason", content_type = "text/plain"),
    )
)]
pub async fn healthz(liveness: web::Data<Liveness>) -> HttpResponse {
    match liveness.failure() {
        None => HttpResponse::Ok().content_type("text/plain").body("ok"),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(reason),
    }
}

/// The connection `/readyz` pings: its own, so that requests holding every connection of
/// the API's pool (slow queries, row locks) do not make the replica look unready and take
/// it out of the Service while the database is fine.
pub struct Readiness(pub Store);

/// The process can serve: the database answers
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    responses(
        (status = 200, description = "Ready"),
        (status = 503, description = "The database does not answer", body = super::Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn readyz(readiness: web::Data<Readiness>) -> Result<HttpResponse, ApiError> {
    readiness.0.ping().await.map_err(ApiError::Store)?;
    Ok(HttpResponse::Ok().content_type("text/plain").body("ok"))
}

/// Who may read `/metrics`: anyone (`--open-metrics`), or the bearer of the metrics token
/// (`EXTSVC_METRICS_TOKEN`) or of the platform admin's. Series name every service, so
/// they are not for every team to read.
pub struct MetricsAccess {
    pub open: bool,
    pub token: Option<[u8; 32]>,
}

impl MetricsAccess {
    async fn check(&self, request: &HttpRequest) -> Result<(), ApiError> {
        if self.open {
            return Ok(());
        }
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| crate::auth::bearer(value.as_bytes()).ok())
            .map(crate::auth::token::hash);
        if presented.is_some() && presented == self.token {
            return Ok(());
        }
        if authenticate(request).await?.is_platform_admin() {
            return Ok(());
        }
        Err(ApiError::Forbidden(
            "metrics are for the metrics token or the platform admin".to_owned(),
        ))
    }
}

/// Prometheus metrics
///
/// The Prometheus text format 0.0.4, or OpenMetrics 1.0.0 when `Accept` ranks it first
/// (as Prometheus itself does). Label values are lower case.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses((status = 200, description = "The metrics, in the format `Accept` asks for",
        headers(("Vary" = String, description = "`Accept`: the format depends on it")),
        content(
            ("text/plain; version=0.0.4; charset=utf-8"),
            ("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        ),
    ))
)]
pub async fn metrics(
    request: HttpRequest,
    access: web::Data<MetricsAccess>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    access.check(&request).await?;
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Exposition::negotiate(accept);
    let text = metrics
        .encode(format)
        .map_err(|_| ApiError::Unavailable("the metrics could not be encoded".to_owned()))?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((header::VARY, "Accept"))
        .body(text))
}
