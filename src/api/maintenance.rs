//! `.../{name}/maintenance`: take addresses out of rotation for a while without touching
//! the spec. The controller publishes them not ready (with the reason) until the window
//! ends: when `until` passes, or when it is deleted early.

use std::net::IpAddr;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::{FieldError, ValidationErrors};
use crate::resource::{MaintenanceList, MaintenanceRequest};
use crate::store::{Store, StoredService};

use super::body::read_body;
use super::caller::ServicePath;
use super::{ApiError, Problem};

const MAX_ADDRESSES: usize = 100;
const MAX_REASON_CHARS: usize = 256;
const MAX_WINDOW_DAYS: i64 = 30;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/namespaces/{namespace}/external-services/{name}/maintenance")
            .route(web::get().to(get_maintenance))
            .route(web::post().to(start_maintenance))
            .route(web::delete().to(end_maintenance))
            .default_service(super::method_not_allowed("GET, POST, DELETE")),
    );
}

async fn registered(store: &Store, path: &ServicePath) -> Result<StoredService, ApiError> {
    path.readable()?;
    store
        .get_service(&path.namespace, &path.name)
        .await
        .map_err(|e| ApiError::from_store(e, &path.namespace, &path.name))
}

async fn windows(store: &Store, path: &ServicePath) -> Result<HttpResponse, ApiError> {
    let items = store
        .maintenance(Some((&path.namespace, &path.name)))
        .await
        .map_err(ApiError::Store)?;
    Ok(HttpResponse::Ok().json(MaintenanceList {
        namespace: path.namespace.clone(),
        name: path.name.clone(),
        items: items.into_iter().map(|w| w.into_window()).collect(),
    }))
}

/// Maintenance windows of an external service
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/external-services/{name}/maintenance",
    tag = "maintenance",
    params(
        ("namespace" = String, Path, description = "Namespace of the service"),
        ("name" = String, Path, description = "Name of the service"),
    ),
    responses(
        (status = 200, description = "The windows in force", body = MaintenanceList),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_maintenance(
    path: ServicePath,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    registered(&store, &path).await?;
    windows(&store, &path).await
}

/// Take addresses out of rotation
///
/// The addresses are published not ready, with the reason, until `until` (or until the
/// window is deleted); the spec and its generation stay as they are. Posting again for
/// an address moves its window.
#[utoipa::path(
    post,
    path = "/api/v1/namespaces/{namespace}/external-services/{name}/maintenance",
    tag = "maintenance",
    params(
        ("namespace" = String, Path, description = "Namespace of the service"),
        ("name" = String, Path, description = "Name of the service"),
    ),
    request_body(content(
        (MaintenanceRequest = "application/json", example = json!({"addresses": ["192.0.2.10"], "reason": "kernel upgrade", "until": "2026-12-01T18:00:00Z"})),
        (MaintenanceRequest = "application/yaml"),
    )),
    responses(
        (status = 200, description = "The windows now in force", body = MaintenanceList),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An address the service does not have, a reason too long, a time in the past", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn start_maintenance(
    request: HttpRequest,
    path: ServicePath,
    payload: web::Payload,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let service = registered(&store, &path).await?;
    path.writable()?;
    let body: MaintenanceRequest = read_body(&request, payload).await?;
    let (addresses, until) = validate(&body, &service, Utc::now())?;
    store
        .start_maintenance(
            &path.namespace,
            &path.name,
            &addresses,
            body.reason.trim(),
            until,
            &path.caller.actor.to_string(),
        )
        .await
        .map_err(|e| ApiError::from_store(e, &path.namespace, &path.name))?;
    windows(&store, &path).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndParams {
    /// End the window of this address only (default: every window of the service).
    address: Option<String>,
}

/// Put addresses back into rotation now
#[utoipa::path(
    delete,
    path = "/api/v1/namespaces/{namespace}/external-services/{name}/maintenance",
    tag = "maintenance",
    params(
        ("namespace" = String, Path, description = "Namespace of the service"),
        ("name" = String, Path, description = "Name of the service"),
        EndParams,
    ),
    responses(
        (status = 200, description = "The windows still in force", body = MaintenanceList),
        (status = 400, description = "An `address` that is no address", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service, or no window on `address`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn end_maintenance(
    path: ServicePath,
    params: web::Query<EndParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    registered(&store, &path).await?;
    path.writable()?;
    // Written as the window was made: an IP in its canonical form, a name in lower case.
    let address = params
        .address
        .as_deref()
        .map(|a| canonical(a).unwrap_or_default());
    let ended = store
        .end_maintenance(&path.namespace, &path.name, address.as_deref())
        .await
        .map_err(ApiError::Store)?;
    if let (Some(address), 0) = (&address, ended) {
        return Err(ApiError::NoSuch(format!(
            "maintenance window on {address} of {}/{}",
            path.namespace, path.name
        )));
    }
    windows(&store, &path).await
}

/// The addresses (as the service names them) and the end of a window, or every field
/// that is wrong.
fn validate(
    body: &MaintenanceRequest,
    service: &StoredService,
    now: DateTime<Utc>,
) -> Result<(Vec<String>, DateTime<Utc>), ApiError> {
    let mut errors = Vec::new();
    let mut fail = |pointer: String, detail: &str| {
        errors.push(FieldError {
            pointer,
            detail: detail.to_owned(),
        });
    };
    if body.addresses.is_empty() || body.addresses.len() > MAX_ADDRESSES {
        fail(
            "/addresses".to_owned(),
            "must list between 1 and 100 addresses",
        );
    }
    let known = known_addresses(service);
    let mut addresses = Vec::new();
    for (index, address) in body.addresses.iter().enumerate() {
        match canonical(address).filter(|a| known.contains(a)) {
            Some(address) => addresses.push(address),
            None => fail(
                format!("/addresses/{index}"),
                "is not an address of this service: an IP or DNS name among its endpoints, or an IP a name of it resolves to",
            ),
        }
    }
    addresses.sort();
    addresses.dedup();
    let reason = body.reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        fail(
            "/reason".to_owned(),
            "must be 1-256 characters, without control characters",
        );
    }
    let until = match DateTime::parse_from_rfc3339(body.until.trim()) {
        Ok(until) => {
            let until = until.with_timezone(&Utc);
            if until <= now {
                fail("/until".to_owned(), "must be in the future");
            } else if until > now + chrono::Duration::days(MAX_WINDOW_DAYS) {
                fail("/until".to_owned(), "must be within 30 days");
            }
            until
        }
        Err(_) => {
            fail(
                "/until".to_owned(),
                "must be an RFC 3339 time, like 2026-12-01T18:00:00Z",
            );
            now
        }
    };
    if errors.is_empty() {
        Ok((addresses, until))
    } else {
        Err(ValidationErrors(errors).into())
    }
}

/// An IP in its canonical form, or a DNS name in lower case.
fn canonical(address: &str) -> Option<String> {
    let address = address.trim();
    if address.is_empty() || address.len() > 253 {
        return None;
    }
    Some(match address.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => address.to_ascii_lowercase(),
    })
}

/// The endpoints' addresses, and the IPs the status says their names resolved to.
fn known_addresses(service: &StoredService) -> Vec<String> {
    let endpoints = service
        .spec
        .0
        .endpoints
        .iter()
        .filter_map(|e| canonical(&e.address));
    let resolved = service
        .status
        .iter()
        .flat_map(|s| s.0.addresses.iter())
        .filter_map(|a| canonical(&a.address));
    endpoints.chain(resolved).collect()
}
