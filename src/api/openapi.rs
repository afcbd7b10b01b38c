//! The OpenAPI 3.1 document, generated from the handlers and types. The committed copy
//! in `openapi/openapi.json` must equal it (a test checks).

use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{audit, events, health, maintenance, services, system, teams};

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
        events::service_events,
        events::namespace_events,
        maintenance::get_maintenance,
        maintenance::start_maintenance,
        maintenance::end_maintenance,
        teams::create_team,
        teams::list_teams,
        teams::get_team,
        teams::put_team,
        teams::delete_team,
        teams::create_token,
        teams::list_tokens,
        teams::revoke_token,
        audit::list_audit,
        system::healthz,
        system::readyz,
        system::metrics,
    ),
    tags(
        (name = "external-services", description = "Backends outside the cluster"),
        (name = "health", description = "What the health checks found"),
        (name = "events", description = "What happens to services, as server-sent event streams"),
        (name = "maintenance", description = "Addresses out of rotation for a while"),
        (name = "teams", description = "Teams, the namespaces they own, and their tokens"),
        (name = "audit", description = "Who changed what, and who was refused"),
        (name = "system", description = "Probes of the server itself"),
    ),
    // A dry run with `probe=true` answers this instead of the document.
    components(schemas(super::DryRunResult)),
    modifiers(&ParameterRules, &Security, &Examples),
)]
pub struct ApiDoc;

/// An example of every request body and every answer, as Swagger UI shows them and fills
/// "Try it out" with: from `openapi/examples.json`, keyed by schema name (`request:` for
/// a request body's, `text:` and the path for a plain-text answer). A test checks that
/// each decodes into its type, and that every operation has them.
struct Examples;

const EXAMPLES: &str = include_str!("../../openapi/examples.json");

impl Modify for Examples {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Ok(examples) =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(EXAMPLES)
        else {
            return;
        };
        if let Some(components) = openapi.components.as_mut() {
            for (name, schema) in components.schemas.iter_mut() {
                if let (Some(example), RefOr::T(Schema::Object(object))) =
                    (examples.get(name), schema)
                {
                    object.examples = vec![example.clone()];
                }
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let bodies = operation.request_body.iter_mut().filter_map(|b| match b {
                    RefOr::T(body) => Some(body),
                    RefOr::Ref(_) => None,
                });
                for content in bodies
                    .flat_map(|b| b.content.values_mut())
                    .filter_map(content_of)
                {
                    if let Some(example) =
                        schema_name(content).and_then(|n| examples.get(&format!("request:{n}")))
                    {
                        content.example = Some(example.clone());
                    }
                }
                let answers = operation
                    .responses
                    .responses
                    .values_mut()
                    .filter_map(|r| match r {
                        RefOr::T(response) => Some(response),
                        RefOr::Ref(_) => None,
                    });
                for response in answers {
                    for (media_type, content) in response.content.iter_mut() {
                        let Some(content) = content_of(content) else {
                            continue;
                        };
                        if media_type.starts_with("text/plain")
                            || media_type.starts_with("application/openmetrics-text")
                        {
                            content.example = examples.get(&format!("text:{path}")).cloned();
                        }
                    }
                }
            }
        }
    }
}

fn content_of(
    content: &mut RefOr<utoipa::openapi::Content>,
) -> Option<&mut utoipa::openapi::Content> {
    match content {
        RefOr::T(content) => Some(content),
        RefOr::Ref(_) => None,
    }
}

/// The component a content's schema refers to.
fn schema_name(content: &utoipa::openapi::Content) -> Option<String> {
    match content.schema.as_ref()? {
        RefOr::Ref(reference) => reference.ref_location.rsplit('/').next().map(str::to_owned),
        RefOr::T(_) => None,
    }
}

/// The rules the server checks on the parameters every operation shares, written into
/// each of them, so that a client generated from the document never sends what the server
/// refuses.
struct ParameterRules;

/// A DNS-1123 label (a namespace).
const NAMESPACE: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1035 label (a registration's name, which names its Service too).
const NAME: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// A token's id.
const UUID: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
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
            (ParameterIn::Path, "team") => Some((NAMESPACE, Some(63))),
            (ParameterIn::Path, "id") => Some((UUID, Some(36))),
            (ParameterIn::Query, "continue") if !has_pattern(parameter) => Some((CONTINUE, None)),
            (ParameterIn::Header, "If-Match") => Some((IF_MATCH, None)),
            _ => None,
        };
        if let Some((pattern, max_length)) = rule {
            string_schema(parameter, pattern, max_length);
        }
    }
}

/// Whether the handler's own declaration already gives the parameter a pattern.
fn has_pattern(parameter: &Parameter) -> bool {
    matches!(&parameter.schema, Some(RefOr::T(Schema::Object(object))) if object.pattern.is_some())
}

fn string_schema(parameter: &mut Parameter, pattern: &str, max_length: Option<usize>) {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .max_length(max_length);
    parameter.schema = Some(schema.into());
}

/// Every operation but the kubelet's probes takes a bearer token: an API token, the
/// platform admin's, an OIDC ID token or a Kubernetes service-account token. Written
/// into each operation, with the answers every one of them may give.
struct Security;

/// The operations anyone may call.
const OPEN: [&str; 2] = ["/healthz", "/readyz"];

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`extsvc_...`), the platform admin's token, an OIDC ID \
                         token of a trusted issuer, or a Kubernetes service-account token",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            if OPEN.contains(&path.as_str()) {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                secure(operation);
            }
        }
    }
}

fn secure(operation: &mut Operation) {
    operation.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    let answers = [
        ("401", "No valid credentials (`WWW-Authenticate: Bearer`)"),
        ("403", "The caller may not do this"),
        (
            "429",
            "Over the caller's rate (`Retry-After`, `RateLimit-*`)",
        ),
    ];
    for (status, description) in answers {
        let problem = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build();
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(super::PROBLEM_JSON, problem)
                    .build()
                    .into()
            });
    }
}

impl ApiDoc {
    /// The document as committed: pretty JSON with a final newline.
    pub fn to_pretty_json() -> Result<String, serde_json::Error> {
        Ok(format!("{}\n", Self::openapi().to_pretty_json()?))
    }
}
