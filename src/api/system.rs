//! Probes for whoever runs the server: `/healthz` and `/readyz`.

use actix_web::{HttpResponse, web};

use crate::store::Store;

use super::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
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
