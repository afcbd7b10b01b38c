//! The OpenAPI 3.1 document, generated from the handlers and types. The committed copy
//! in `openapi/openapi.json` must equal it (a test checks).

use utoipa::OpenApi;

use super::{health, services, system};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "extsvc",
        description = "Register backends that live outside Kubernetes and use them from inside it. \
            Errors are RFC 9457 problem documents (application/problem+json); validation errors \
            list every bad field as a JSON pointer.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        services::register_service,
        services::list_namespaced_services,
        services::get_service,
        services::replace_service,
        services::delete_service,
        services::list_all_services,
        health::get_health,
        health::get_health_history,
        health::list_health,
        system::healthz,
        system::readyz,
        system::metrics,
    ),
    tags(
        (name = "external-services", description = "Backends outside the cluster"),
        (name = "health", description = "What the health checks found"),
        (name = "system", description = "Probes of the server itself"),
    )
)]
pub struct ApiDoc;

impl ApiDoc {
    /// The document as committed: pretty JSON with a final newline.
    pub fn to_pretty_json() -> Result<String, serde_json::Error> {
        Ok(format!("{}\n", Self::openapi().to_pretty_json()?))
    }
}
