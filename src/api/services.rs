//! `/api/v1/.../external-services`: register, read, replace, delete and list.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::{
    FieldError, LabelSelector, Policies, Registration, ServiceSpec, ValidationErrors,
    check_ingress_hosts, cidrs,
};
use crate::probe::{Dialer, probe_once};
use crate::resource::{
    ExternalServiceDocument, ExternalServiceList, ServiceHealth, WaitFor, unmet,
};
use crate::store::{Commit, ListQuery, Precondition, Store, StoredService, WriteOutcome};

use super::audit::Generations;
use super::body::read_document;
use super::caller::{Authenticated, InNamespace, ServicePath};
use super::events::{Feed, Scope};
use super::paging::{decode_continue, finish_page, limit};
use super::{ApiError, Problem};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
/// How long a wait lasts unless it says, and at most.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long the probes of a dry run may take together.
const DRY_RUN_PROBE_BUDGET: Duration = Duration::from_secs(15);

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

fn respond(
    mut response: actix_web::HttpResponseBuilder,
    service: StoredService,
    generations: Generations,
) -> HttpResponse {
    response.insert_header((header::ETAG, etag(&service)));
    let mut response = response.json(service.into_document());
    response.extensions_mut().insert(generations);
    response
}

/// `?dryRun=true` (and `probe=true` with it): do everything a write does but keep it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteParams {
    /// `true`: validate, authorize and answer with the document as it would be stored
    /// (defaults filled in, the generation it would have, no `resourceVersion`), writing
    /// nothing. The audit log records the attempt as `dry-run`.
    #[serde(rename = "dryRun")]
    #[param(rename = "dryRun", value_type = Option<bool>)]
    dry_run: Option<String>,
    /// With `dryRun=true` on a create or replace: also run every check once on every
    /// address (the address policy applies; 15 s at most) and answer with the results.
    #[param(value_type = Option<bool>)]
    probe: Option<String>,
}

/// What a write was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write,
    DryRun,
    DryRunAndProbe,
}

/// Marks a dry run's response, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct DryRun;

fn flag(parameter: &'static str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false") => Ok(false),
        // kubectl's spelling.
        Some("true" | "All") => Ok(true),
        Some(_) => Err(ApiError::BadParameter {
            parameter,
            detail: "must be true or false".to_owned(),
        }),
    }
}

impl WriteParams {
    fn mode(&self, probes: bool) -> Result<Mode, ApiError> {
        let dry_run = flag("dryRun", self.dry_run.as_deref())?;
        let probe = flag("probe", self.probe.as_deref())?;
        match (dry_run, probe) {
            (false, false) => Ok(Mode::Write),
            (true, false) => Ok(Mode::DryRun),
            (true, true) if probes => Ok(Mode::DryRunAndProbe),
            (_, true) => Err(ApiError::BadParameter {
                parameter: "probe",
                detail: if probes {
                    "probe=true needs dryRun=true: a real write is probed by the probe engine"
                        .to_owned()
                } else {
                    "a delete has nothing to probe".to_owned()
                },
            }),
        }
    }

    fn commit(mode: Mode) -> Commit {
        match mode {
            Mode::Write => Commit::Yes,
            Mode::DryRun | Mode::DryRunAndProbe => Commit::DryRun,
        }
    }
}

/// The document of a dry run and what probing its addresses found.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DryRunResult {
    pub document: ExternalServiceDocument,
    /// One probe of every check on every address.
    pub probe: ServiceHealth,
}

/// The answer to a write, or to its dry run: no `resourceVersion` or ETag (none was
/// made), and with `probe`, the results of probing the document's addresses once.
async fn answer(
    response: actix_web::HttpResponseBuilder,
    service: StoredService,
    generations: Generations,
    (mode, registration): (Mode, &Registration),
    dialer: &Dialer,
) -> Result<HttpResponse, ApiError> {
    if mode == Mode::Write {
        return Ok(respond(response, service, generations));
    }
    let mut response = response;
    let mut document = service.into_document();
    document.metadata.resource_version = None;
    let mut answer = match mode {
        Mode::DryRunAndProbe => {
            let spec = ServiceSpec::parse(registration.spec()).map_err(ApiError::Invalid)?;
            let probe = probe_once(registration.key(), &spec, dialer, DRY_RUN_PROBE_BUDGET).await;
            response.json(DryRunResult { document, probe })
        }
        Mode::Write | Mode::DryRun => response.json(document),
    };
    answer.extensions_mut().insert(generations);
    answer.extensions_mut().insert(DryRun);
    Ok(answer)
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
    dialer: web::Data<Dialer>,
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
        &dialer,
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

/// A wait asked of `GET`: what for, how long, how many addresses.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Answer only once the service is `synced` (in the cluster and reconciled at its
    /// current generation), `ready` (synced, and every address ready, or `minReady`), or
    /// `deleted` (204). If the timeout passes first: 408 with why.
    #[serde(rename = "waitFor")]
    #[param(rename = "waitFor", value_type = Option<WaitFor>)]
    wait_for: Option<String>,
    /// How long to wait: seconds, or a duration like `90s`, `2m` (default 60 s, at most 5 minutes).
    #[param(value_type = Option<String>, example = "60s")]
    timeout: Option<String>,
    /// With `waitFor=ready`: the ready addresses that suffice (default: all).
    #[serde(rename = "minReady")]
    #[param(rename = "minReady", value_type = Option<u32>)]
    min_ready: Option<String>,
}

/// A parsed wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wait {
    condition: WaitFor,
    timeout: Duration,
    min_ready: Option<u32>,
}

impl WaitParams {
    fn parse(&self) -> Result<Option<Wait>, ApiError> {
        let Some(condition) = &self.wait_for else {
            if self.timeout.is_some() || self.min_ready.is_some() {
                return Err(ApiError::BadParameter {
                    parameter: "waitFor",
                    detail: "timeout and minReady go with waitFor".to_owned(),
                });
            }
            return Ok(None);
        };
        let condition = WaitFor::parse(condition).ok_or_else(|| ApiError::BadParameter {
            parameter: "waitFor",
            detail: "must be ready, synced or deleted".to_owned(),
        })?;
        let timeout = match &self.timeout {
            None => DEFAULT_WAIT,
            Some(text) => parse_duration(text)
                .filter(|t| *t <= MAX_WAIT)
                .ok_or_else(|| ApiError::BadParameter {
                    parameter: "timeout",
                    detail: "must be a duration of at most 5 minutes, like 30, 90s or 2m"
                        .to_owned(),
                })?,
        };
        let min_ready = match &self.min_ready {
            None => None,
            Some(_) if condition != WaitFor::Ready => {
                return Err(ApiError::BadParameter {
                    parameter: "minReady",
                    detail: "goes with waitFor=ready".to_owned(),
                });
            }
            Some(text) => Some(text.parse::<u32>().map_err(|_| ApiError::BadParameter {
                parameter: "minReady",
                detail: "must be a whole number of addresses".to_owned(),
            })?),
        };
        Ok(Some(Wait {
            condition,
            timeout,
            min_ready,
        }))
    }
}

/// `90`, `90s`, `2m`, `1m30s`, `500ms`: a duration as kubectl's `--timeout` takes it.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        total += match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60)?),
            "h" => Duration::from_secs(number.checked_mul(3600)?),
            _ => return None,
        };
        rest = tail;
    }
    (!text.is_empty()).then_some(total)
}

/// Answers the moment `namespace/name` meets the wait's condition: every event of the
/// service wakes the wait to look again. 408 when the timeout passes (or the server
/// stops) first.
async fn wait_for(
    namespace: &str,
    name: &str,
    wait: Wait,
    store: &Store,
    feed: &Feed,
) -> Result<HttpResponse, ApiError> {
    let scope = Scope {
        namespace: namespace.to_owned(),
        name: Some(name.to_owned()),
    };
    // Subscribed before the first look, so that no change between them goes unseen.
    let mut events = feed.subscribe(scope, None).await?;
    let deadline = tokio::time::Instant::now() + wait.timeout;
    loop {
        let current = store
            .find_service(namespace, name)
            .await
            .map_err(ApiError::Store)?;
        let current = match (current, wait.condition) {
            (None, WaitFor::Deleted) => return Ok(HttpResponse::NoContent().finish()),
            (None, _) => {
                return Err(ApiError::from_store(
                    crate::store::StoreError::NotFound,
                    namespace,
                    name,
                ));
            }
            (Some(service), condition) => {
                let document = service.clone().into_document();
                let reasons = unmet(&document, condition, wait.min_ready);
                if reasons.is_empty() {
                    return Ok(respond(HttpResponse::Ok(), service, Generations::default()));
                }
                (document, reasons)
            }
        };
        let woken = tokio::select! {
            () = tokio::time::sleep_until(deadline) => None,
            next = events.next() => next.map_err(ApiError::Store)?,
        };
        if woken.is_none() {
            let (document, reasons) = current;
            return Err(ApiError::WaitTimedOut {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                condition: wait.condition.as_str(),
                timeout: wait.timeout,
                unmet: reasons,
                current: Box::new(document),
            });
        }
    }
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
    dialer: web::Data<Dialer>,
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
        &dialer,
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
