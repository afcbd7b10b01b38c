//! Health over the API, as the leader's probe engine last published it (a couple of
//! seconds old at most), from whichever replica answers.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::DnsLabel;
use crate::resource::{HealthHistory, HealthList, ServiceHealth};
use crate::store::{Store, StoreError, StoredService, StoredWindow};

use super::caller::{Authenticated, ServicePath};
use super::paging::{decode_continue, finish_page, limit};
use super::{ApiError, Problem};

const DEFAULT_HISTORY: i64 = 20;
const MAX_HISTORY: i64 = 50;
/// A report lists every check on every address, up to 16,000 entries for one service:
/// a page holds few of them.
const MAX_LIST: i64 = 50;
const DEFAULT_LIST: i64 = 20;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/namespaces/{namespace}/external-services/{name}/health")
            .route(web::get().to(get_health))
            .default_service(super::method_not_allowed("GET")),
    )
    .service(
        web::resource("/api/v1/namespaces/{namespace}/external-services/{name}/health/history")
            .route(web::get().to(get_health_history))
            .default_service(super::method_not_allowed("GET")),
    )
    .service(
        web::resource("/api/v1/health")
            .route(web::get().to(list_health))
            .default_service(super::method_not_allowed("GET")),
    );
}

/// Checks that the caller may read the registration and that it exists; health of an
/// unknown name is a 404.
async fn registered(store: &Store, path: &ServicePath) -> Result<StoredService, ApiError> {
    path.readable()?;
    let (namespace, name) = (path.namespace.as_str(), path.name.as_str());
    match store.find_service(namespace, name).await {
        Ok(Some(service)) => Ok(service),
        Ok(None) => Err(ApiError::from_store(StoreError::NotFound, namespace, name)),
        Err(error) => Err(ApiError::Store(error)),
    }
}

/// Health of an external service
///
/// Per address and per check: state, last result and its error, latency, consecutive
/// successes and failures, last probe and last transition times; plus ready/total
/// counts. Empty until the probe engine has reported on the service.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/external-services/{name}/health",
    tag = "health",
    params(
        ("namespace" = String, Path, description = "Namespace of the service"),
        ("name" = String, Path, description = "Name of the service"),
    ),
    responses(
        (status = 200, description = "The service's health", body = ServiceHealth),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_health(
    path: ServicePath,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let service = registered(&store, &path).await?;
    let ServicePath {
        namespace, name, ..
    } = path;
    let health = store
        .health(&namespace, &name)
        .await
        .map_err(ApiError::Store)?;
    let windows = store
        .maintenance(Some((&namespace, &name)))
        .await
        .map_err(ApiError::Store)?;
    let mut health = health.unwrap_or(ServiceHealth {
        namespace,
        name,
        ..ServiceHealth::default()
    });
    mark_maintenance(&mut health, &service, windows);
    Ok(HttpResponse::Ok().json(health))
}

/// Shows on each address the maintenance window it is in: its own, or that of the DNS
/// name it was resolved from (as the status says).
fn mark_maintenance(
    health: &mut ServiceHealth,
    service: &StoredService,
    windows: Vec<StoredWindow>,
) {
    if windows.is_empty() {
        return;
    }
    let resolved_from = |ip: &str| {
        service
            .status
            .as_ref()
            .and_then(|s| s.0.addresses.iter().find(|a| a.address == ip))
            .and_then(|a| a.resolved_from.clone())
    };
    for address in &mut health.addresses {
        let name = resolved_from(&address.address);
        address.maintenance = windows
            .iter()
            .find(|w| w.address == address.address || Some(&w.address) == name.as_ref())
            .map(|w| w.clone().into_window());
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Transitions per address, newest first: 1-50 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 50)]
    limit: Option<String>,
}

/// Readiness transitions of an external service
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/external-services/{name}/health/history",
    tag = "health",
    params(
        ("namespace" = String, Path, description = "Namespace of the service"),
        ("name" = String, Path, description = "Name of the service"),
        HistoryParams,
    ),
    responses(
        (status = 200, description = "The last transitions of each address, newest first", body = HealthHistory),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_health_history(
    path: ServicePath,
    params: web::Query<HistoryParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let limit = limit(params.limit.as_deref(), DEFAULT_HISTORY, MAX_HISTORY)?;
    registered(&store, &path).await?;
    let ServicePath {
        namespace, name, ..
    } = path;
    let transitions = store
        .health_history(&namespace, &name, limit)
        .await
        .map_err(ApiError::Store)?;
    Ok(HttpResponse::Ok().json(HealthHistory {
        namespace,
        name,
        transitions,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListHealthParams {
    /// `unready`: only services with an address that is not ready; `all` (default).
    #[param(pattern = "^(all|unready)$")]
    state: Option<String>,
    /// Only this namespace.
    #[param(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    namespace: Option<String>,
    /// Items per page, 1-50 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 50)]
    limit: Option<String>,
    /// The `continue` of the previous page.
    #[serde(rename = "continue")]
    #[param(rename = "continue")]
    continue_token: Option<String>,
}

/// Health of every external service
///
/// With `state=unready`, the services that have an address that is not ready. Only the
/// namespaces the caller may read.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    params(ListHealthParams),
    responses(
        (status = 200, description = "Health reports, in namespace and name order", body = HealthList),
        (status = 400, description = "A bad parameter (`state`, `namespace`, `limit`, `continue`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_health(
    caller: Authenticated,
    params: web::Query<ListHealthParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let unready = match params.state.as_deref() {
        None | Some("all") => false,
        Some("unready") => true,
        Some(_) => {
            return Err(ApiError::BadParameter {
                parameter: "state",
                detail: "must be unready or all".to_owned(),
            });
        }
    };
    if let Some(namespace) = &params.namespace {
        DnsLabel::parse(namespace).map_err(|e| ApiError::BadParameter {
            parameter: "namespace",
            detail: e.to_string(),
        })?;
        caller
            .0
            .may_list(namespace)
            .map_err(|refusal| ApiError::refused(refusal, namespace, ""))?;
    }
    let limit = limit(params.limit.as_deref(), DEFAULT_LIST, MAX_LIST)?;
    let after = decode_continue(params.continue_token.as_deref())?;
    // One namespace, every namespace, or (for a team) each of its own in turn.
    let scopes: Vec<Option<&str>> = match (&params.namespace, caller.0.namespaces()) {
        (Some(namespace), _) => vec![Some(namespace)],
        (None, None) => vec![None],
        (None, Some(own)) => own.iter().map(|n| Some(n.as_str())).collect(),
    };
    let mut items = Vec::new();
    for namespace in scopes {
        // One extra item tells whether another page follows.
        let wanted = limit + 1 - items.len() as i64;
        if wanted <= 0 {
            break;
        }
        let found = store
            .list_health(namespace, unready, after.clone(), wanted)
            .await
            .map_err(ApiError::Store)?;
        items.extend(found);
    }
    let continue_token = finish_page(&mut items, limit, |h| {
        (h.namespace.as_str(), h.name.as_str())
    });
    Ok(HttpResponse::Ok().json(HealthList {
        items,
        continue_token,
    }))
}
