//! The OpenAPI 3.1 document, generated from the handlers and types. The committed copy
//! in `openapi/openapi.json` must equal it (a test checks).

use utoipa::openapi::RefOr;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{Modify, OpenApi};

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
    ),
    modifiers(&ParameterRules),
)]
pub struct ApiDoc;

/// The rules the server checks on the parameters every operation shares, written into
/// each of them, so that a client generated from the document never sends what the server
/// refuses.
struct ParameterRules;

/// A DNS-1123 label (a namespace).
const NAMESPACE: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1035 label (a registration's name, which names its Service too).
const NAME: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// The base64url (unpadded) tokens `finish_page` writes.
const CONTINUE: &str = "^[A-Za-z0-9_-]+$";
/// `*`, or a comma-separated list of entity tags, strong or weak.
const IF_MATCH: &str = r#"^\s*(\*|(W/)?"[^",]*"(\s*,\s*(W/)?"[^",]*")*)\s*$"#;

impl Modify for ParameterRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                constrain(operation);
            }
        }
    }
}

fn constrain(operation: &mut Operation) {
    let parameters = operation.parameters.iter_mut().flatten();
    for parameter in parameters.filter_map(|p| match p {
        RefOr::T(parameter) => Some(parameter),
        RefOr::Ref(_) => None,
    }) {
        let rule = match (&parameter.parameter_in, parameter.name.as_str()) {
            (ParameterIn::Path, "namespace") => Some((NAMESPACE, Some(63))),
            (ParameterIn::Path, "name") => Some((NAME, Some(63))),
            (ParameterIn::Query, "continue") => Some((CONTINUE, None)),
            (ParameterIn::Header, "If-Match") => Some((IF_MATCH, None)),
            _ => None,
        };
        if let Some((pattern, max_length)) = rule {
            string_schema(parameter, pattern, max_length);
        }
    }
}

fn string_schema(parameter: &mut Parameter, pattern: &str, max_length: Option<usize>) {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .max_length(max_length);
    parameter.schema = Some(schema.into());
}

impl ApiDoc {
    /// The document as committed: pretty JSON with a final newline.
    pub fn to_pretty_json() -> Result<String, serde_json::Error> {
        Ok(format!("{}\n", Self::openapi().to_pretty_json()?))
    }
}
