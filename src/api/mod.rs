//! The REST API: handlers, the OpenAPI document, problem+json errors.

mod audit;
mod body;
mod caller;
mod dry_run;
mod events;
mod health;
mod maintenance;
mod openapi;
mod paging;
mod problem;
mod rate_limit;
mod services;
mod system;
mod teams;
mod wait;

pub use audit::{REQUEST_ID, middleware as audit_middleware, prune as prune_audit};
pub use body::MAX_BODY_BYTES;
pub use dry_run::{DryRunResult, Probing};
pub use events::Feed;
pub use openapi::ApiDoc;
pub use problem::{ApiError, PROBLEM_JSON, Problem, ProblemField};
pub use rate_limit::RateLimiter;
pub use services::Served;
pub use system::{Liveness, MetricsAccess, Readiness};
pub use teams::Reserved;
pub use wait::parse_duration;

use actix_web::{HttpResponse, web};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

/// Mounts every route, the OpenAPI document and Swagger UI.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|error, _| {
        ApiError::BadParameter {
            parameter: "query",
            detail: error.to_string(),
        }
        .into()
    }))
    .configure(services::configure)
    .configure(health::configure)
    .configure(events::configure)
    .configure(maintenance::configure)
    .configure(teams::configure)
    .configure(audit::configure)
    .configure(system::configure)
    .service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/openapi.json", ApiDoc::openapi()));
}

/// Answers requests that match no route.
pub async fn no_route() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute)
}

/// Every `every` until `shutdown`, deletes what is older than `retention` with `prune`,
/// a batch at a time until a batch deletes nothing.
async fn keep_pruning<F, Fut>(
    every: std::time::Duration,
    retention: chrono::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    what: &str,
    prune: F,
) where
    F: Fn(chrono::DateTime<chrono::Utc>) -> Fut,
    Fut: std::future::Future<Output = Result<u64, crate::store::StoreError>>,
{
    let mut every = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        loop {
            match prune(chrono::Utc::now() - retention).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(error = %crate::telemetry::chain(&error), "could not prune {what}");
                    break;
                }
            }
        }
    }
}

/// A `true`/`false` query parameter; `default` when it is absent.
fn flag(parameter: &'static str, value: Option<&str>, default: bool) -> Result<bool, ApiError> {
    match value {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(ApiError::BadParameter {
            parameter,
            detail: "must be true or false".to_owned(),
        }),
    }
}

/// Answers a method a path does not take with 405 and the `Allow` header that RFC 9110
/// requires, naming the methods it does take.
fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) })
}
