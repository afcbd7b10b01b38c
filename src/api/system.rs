//! For whoever runs the server: `/healthz`, `/readyz` and `/metrics`.

use actix_web::{HttpResponse, web};

use crate::metrics::Metrics;
use crate::store::Store;

use super::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// The process is up
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "Up")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

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
pub async fn readyz(store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    store.ping().await.map_err(ApiError::Store)?;
    Ok(HttpResponse::Ok().content_type("text/plain").body("ok"))
}

/// Prometheus metrics
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"))
)]
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    match metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}
