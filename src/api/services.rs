//! `/api/v1/.../external-services`: register, read, replace, delete and list.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::{
    FieldError, LabelSelector, Policies, Registration, ValidationErrors, check_ingress_hosts, cidrs,
};
use crate::resource::{ExternalServiceDocument, ExternalServiceList};
use crate::store::{ListQuery, Precondition, Store, StoredService, WriteOutcome};

use super::audit::Generations;
use super::body::read_document;
use super::caller::{Authenticated, InNamespace, ServicePath};
use super::dry_run::{DryRun, Mode, Probing, WriteParams, answer};
use super::events::Feed;
use super::paging::{decode_continue, finish_page, limit};
use super::wait::{WaitParams, wait_for};
use super::{ApiError, Problem};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/namespaces/{namespace}/external-services")
            .route(web::get().to(list_namespaced_services))
            .route(web::post().to(register_service))
            .default_service(super::method_not_allowed("GET, POST")),
    )
    .service(
        web::resource("/api/v1/namespaces/{namespace}/external-services/{name}")
            .route(web::get().to(get_service))
            .route(web::put().to(replace_service))
            .route(web::delete().to(delete_service))
            .default_service(super::method_not_allowed("GET, PUT, DELETE")),
    )
    .service(
        web::resource("/api/v1/external-services")
            .route(web::get().to(list_all_services))
            .default_service(super::method_not_allowed("GET")),
    );
}

/// The one namespace this installation writes to the cluster (`--watch-namespace`), or
/// `None` for all of them.
pub struct Served(pub Option<String>);

impl Served {
    /// Refuses a write that the mirror would never deliver.
    fn check(&self, namespace: &str) -> Result<(), ApiError> {
        match &self.0 {
            Some(served) if served != namespace => {
                Err(ApiError::Invalid(ValidationErrors(vec![FieldError {
                    pointer: "/metadata/namespace".to_owned(),
                    detail: format!(
                        "this installation serves namespace {served} only (its --watch-namespace); a write to {namespace} would never reach the cluster"
                    ),
                }])))
            }
            _ => Ok(()),
        }
    }
}

fn path_of(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/external-services/{name}")
}

fn etag(service: &StoredService) -> String {
    format!("\"{}\"", service.resource_version)
}

pub(super) fn respond(
    mut response: actix_web::HttpResponseBuilder,
    service: StoredService,
    generations: Generations,
) -> HttpResponse {
    response.insert_header((header::ETAG, etag(&service)));
    let mut response = response.json(service.into_document());
    response.extensions_mut().insert(generations);
    response
}

/// The document as a registration, if it is valid and within the policies, with the
/// exceptions and Ingress hosts of the team that owns the namespace (read afresh, so
/// that a change the platform admin just made holds at once).
async fn admissible(
    received: &super::body::ReceivedDocument,
    namespace: &str,
    name: Option<&str>,
    policies: &Policies,
    store: &Store,
) -> Result<Registration, ApiError> {
    let owner = store
        .team_of_namespace(namespace)
        .await
        .map_err(ApiError::Store)?;
    let exceptions = owner
        .as_ref()
        .map(|team| cidrs(&team.allowed_cidrs.join(",")).unwrap_or_default())
        .unwrap_or_default();
    let registration = Registration::parse(received.document.clone(), namespace, name)
        .and_then(|registration| {
            policies.check(registration.spec(), &exceptions)?;
            if let Some(team) = &owner {
                check_ingress_hosts(registration.spec(), &team.ingress_hosts, &team.name)?;
            }
            Ok(registration)
        })
        .map_err(|errors| received.locate(errors))?;
    Ok(registration)
}

/// Reads `If-Match`: `*`, or a list of strong entity tags holding resource versions.
/// A tag that is not one of ours simply never matches.
fn precondition(request: &HttpRequest) -> Result<Option<Precondition>, ApiError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || ApiError::BadParameter {
        parameter: "If-Match",
        detail: "must be * or a list of quoted entity tags, like \"42\"".to_owned(),
    };
    let value = value.to_str().map_err(|_| bad())?.trim();
    if value == "*" {
        return Ok(Some(Precondition::Exists));
    }
    let mut versions = Vec::new();
    for tag in value.split(',').map(str::trim) {
        let strong = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
        let weak = tag.strip_prefix("W/\"").and_then(|t| t.strip_suffix('"'));
        match (strong, weak) {
            (Some(opaque), _) => versions.extend(opaque.parse::<i64>().ok()),
            // Weak tags never match under If-Match's strong comparison.
            (None, Some(_)) => {}
            (None, None) => return Err(bad()),
        }
    }
    Ok(Some(Precondition::VersionIn(versions)))
}

/// Register a new external service
///
/// The body is an `ExternalService` document (JSON or YAML). Documents in the original
/// operator's shape (`spec.port`, `spec.ips`, `spec.hosts`, `spec.readinessProbe`) are
/// converted; the response shows the converted document.
#[utoipa::path(
    post,
    path = "/api/v1/namespaces/{namespace}/external-services",
    tag = "external-services",
    params(("namespace" = String, Path, description = "Namespace of the service"), WriteParams),
    request_body(content(
        (ExternalServiceDocument = "application/json"),
        (ExternalServiceDocument = "application/yaml"),
    )),
    responses(
        (status = 201, description = "Registered; with `dryRun=true`, as it would be; with `probe=true` too, a DryRunResult", body = ExternalServiceDocument,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Creating it would pass the namespace's cap on registrations", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON or YAML", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid document, or a namespace this installation does not serve", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(clippy::too_many_arguments)]
pub async fn register_service(
    request: HttpRequest,
    path: InNamespace,
    params: web::Query<WriteParams>,
    payload: web::Payload,
    store: web::Data<Store>,
    served: web::Data<Served>,
    policies: web::Data<Policies>,
    probing: web::Data<Probing>,
) -> Result<HttpResponse, ApiError> {
    let namespace = path.namespace;
    path.caller
        .may_write(&namespace)
        .map_err(|refusal| ApiError::refused(refusal, &namespace, ""))?;
    let mode = params.mode(true)?;
    served.check(&namespace)?;
    let received = read_document(&request, payload).await?;
    let registration = admissible(&received, &namespace, None, &policies, &store).await?;
    let key = registration.key();
    let created = store
        .create_service(&registration, WriteParams::commit(mode))
        .await
        .map_err(|e| ApiError::from_store(e, key.namespace.as_ref(), key.name.as_ref()))?;
    let mut response = HttpResponse::Created();
    response.insert_header((header::LOCATION, path_of(&created.namespace, &created.name)));
    let generations = Generations::created(created.generation);
    answer(
        response,
        created,
        generations,
        (mode, &registration),
        &probing,
    )
    .await
}

/// Read an external service
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/external-services/{name}",
    tag = "external-services",
    params(
        ("namespace" = String, Path, description = "Namespace of the service"),
        ("name" = String, Path, description = "Name of the service"),
        WaitParams,
    ),
    responses(
        (status = 200, description = "The service (with `waitFor`: the moment the condition holds)", body = ExternalServiceDocument, headers(("ETag" = String))),
        (status = 204, description = "`waitFor=deleted`: the service is gone"),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "`waitFor`: the condition was not met within the timeout; `unmet` says why and `current` is the service as it stands", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many waits open on this server", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_service(
    path: ServicePath,
    params: web::Query<WaitParams>,
    store: web::Data<Store>,
    feed: web::Data<Feed>,
) -> Result<HttpResponse, ApiError> {
    path.readable()?;
    let Some(wait) = params.parse()? else {
        let service = store
            .get_service(&path.namespace, &path.name)
            .await
            .map_err(|e| ApiError::from_store(e, &path.namespace, &path.name))?;
        return Ok(respond(HttpResponse::Ok(), service, Generations::default()));
    };
    wait_for(&path.namespace, &path.name, wait, &store, &feed).await
}

/// Create or replace an external service
///
/// Idempotent: sending the same document again changes nothing, not even the
/// `resourceVersion`. `generation` is bumped only when `spec` changes.
#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{namespace}/external-services/{name}",
    tag = "external-services",
    params(
        ("namespace" = String, Path, description = "Namespace of the service"),
        ("name" = String, Path, description = "Name of the service"),
        ("If-Match" = Option<String>, Header, description = "Replace only if the current ETag is one of these"),
        WriteParams,
    ),
    request_body(content(
        (ExternalServiceDocument = "application/json"),
        (ExternalServiceDocument = "application/yaml"),
    )),
    responses(
        (status = 200, description = "Replaced, or already so", body = ExternalServiceDocument, headers(("ETag" = String))),
        (status = 201, description = "Created", body = ExternalServiceDocument,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Creating it would pass the namespace's cap on registrations", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag in If-Match is stale", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON or YAML", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid document, or a namespace this installation does not serve", body = Problem, content_type = "application/problem+json"),
    )
)]
#[allow(clippy::too_many_arguments)]
pub async fn replace_service(
    request: HttpRequest,
    path: ServicePath,
    params: web::Query<WriteParams>,
    payload: web::Payload,
    store: web::Data<Store>,
    served: web::Data<Served>,
    policies: web::Data<Policies>,
    probing: web::Data<Probing>,
) -> Result<HttpResponse, ApiError> {
    path.writable()?;
    let mode = params.mode(true)?;
    let (namespace, name) = (&path.namespace, &path.name);
    served.check(namespace)?;
    let precondition = precondition(&request)?;
    let received = read_document(&request, payload).await?;
    let registration = admissible(&received, namespace, Some(name), &policies, &store).await?;
    let stored = store
        .put_service(
            &registration,
            precondition.as_ref(),
            WriteParams::commit(mode),
        )
        .await
        .map_err(|e| ApiError::from_store(e, namespace, name))?;
    let generations = Generations {
        before: stored.previous_generation,
        after: Some(stored.service.generation),
    };
    let response = match stored.outcome {
        WriteOutcome::Created => {
            let mut response = HttpResponse::Created();
            response.insert_header((header::LOCATION, path_of(namespace, name)));
            response
        }
        WriteOutcome::Replaced | WriteOutcome::Unchanged => HttpResponse::Ok(),
    };
    answer(
        response,
        stored.service,
        generations,
        (mode, &registration),
        &probing,
    )
    .await
}

/// Delete an external service
#[utoipa::path(
    delete,
    path = "/api/v1/namespaces/{namespace}/external-services/{name}",
    tag = "external-services",
    params(
        ("namespace" = String, Path, description = "Namespace of the service"),
        ("name" = String, Path, description = "Name of the service"),
        ("If-Match" = Option<String>, Header, description = "Delete only if the current ETag is one of these"),
        WriteParams,
    ),
    responses(
        (status = 200, description = "Deleted; the service as it was", body = ExternalServiceDocument),
        (status = 422, description = "The namespace is not the one this installation serves (`/metadata/namespace`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag in If-Match is stale", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_service(
    request: HttpRequest,
    path: ServicePath,
    params: web::Query<WriteParams>,
    store: web::Data<Store>,
    served: web::Data<Served>,
) -> Result<HttpResponse, ApiError> {
    path.readable()?;
    path.writable()?;
    let mode = params.mode(false)?;
    let (namespace, name) = (&path.namespace, &path.name);
    served.check(namespace)?;
    let precondition = precondition(&request)?;
    let deleted = store
        .delete_service(
            namespace,
            name,
            precondition.as_ref(),
            WriteParams::commit(mode),
        )
        .await
        .map_err(|e| ApiError::from_store(e, namespace, name))?;
    let generations = Generations {
        before: Some(deleted.generation),
        after: None,
    };
    let mut response = HttpResponse::Ok().json(deleted.into_document());
    response.extensions_mut().insert(generations);
    if mode != Mode::Write {
        response.extensions_mut().insert(DryRun);
    }
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page, 1-500 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The `metadata.continue` of the previous page.
    #[serde(rename = "continue")]
    #[param(rename = "continue")]
    continue_token: Option<String>,
    /// Kubernetes label selector: `a=b`, `a!=b`, `a in (b,c)`, `a notin (b)`, `a`, `!a`.
    #[serde(rename = "labelSelector")]
    #[param(rename = "labelSelector")]
    label_selector: Option<String>,
}

/// List the external services of a namespace
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/external-services",
    tag = "external-services",
    params(("namespace" = String, Path, description = "Namespace of the services"), ListParams),
    responses(
        (status = 200, description = "One page, in name order", body = ExternalServiceList),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_namespaced_services(
    path: InNamespace,
    params: web::Query<ListParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    path.caller
        .may_list(&path.namespace)
        .map_err(|refusal| ApiError::refused(refusal, &path.namespace, ""))?;
    list(Some(&[path.namespace]), params.into_inner(), &store).await
}

/// List the external services of every namespace
///
/// Every namespace the caller may read: a team's own, or all for the platform admin.
#[utoipa::path(
    get,
    path = "/api/v1/external-services",
    tag = "external-services",
    params(ListParams),
    responses(
        (status = 200, description = "One page, in namespace and name order", body = ExternalServiceList),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_all_services(
    caller: Authenticated,
    params: web::Query<ListParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    list(caller.0.namespaces(), params.into_inner(), &store).await
}

/// A page over `namespaces` (every namespace for `None`). A team's namespaces are walked
/// in order, each with the statement for one namespace, which stops at the page.
async fn list(
    namespaces: Option<&[String]>,
    params: ListParams,
    store: &Store,
) -> Result<HttpResponse, ApiError> {
    let limit = limit(params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = decode_continue(params.continue_token.as_deref())?;
    let selector = LabelSelector::parse(params.label_selector.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::BadParameter {
            parameter: "labelSelector",
            detail: e.to_string(),
        })?;
    let scopes: Vec<Option<&str>> = match namespaces {
        None => vec![None],
        Some(namespaces) => namespaces.iter().map(|n| Some(n.as_str())).collect(),
    };
    let mut page = Vec::new();
    for namespace in scopes {
        // One extra row tells whether another page follows.
        let wanted = limit + 1 - page.len() as i64;
        if wanted <= 0 {
            break;
        }
        let rows = store
            .list_services(&ListQuery {
                namespace,
                after: after.clone(),
                selector: &selector,
                limit: wanted,
            })
            .await
            .map_err(ApiError::Store)?;
        page.extend(rows);
    }
    let continue_token = finish_page(&mut page, limit, |s| {
        (s.namespace.as_str(), s.name.as_str())
    });
    let items = page.into_iter().map(StoredService::into_document).collect();
    Ok(HttpResponse::Ok().json(ExternalServiceList::new(items, continue_token)))
}
