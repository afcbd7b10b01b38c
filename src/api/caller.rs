//! The handlers' boundary: who calls (authenticated and within its rate), and the
//! `{namespace}` and `{name}` of the path, validated once.

use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures::future::LocalBoxFuture;

use crate::auth::{AuthError, Authenticator, Caller};
use crate::domain::{DnsLabel, ServiceName};

use super::ApiError;
use super::rate_limit::{Allowance, RateLimiter};

/// An authenticated caller, for a handler to take as an argument. Extracting it
/// answers 401 without valid credentials and 429 past the caller's rate.
pub struct Authenticated(pub Caller);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move { authenticate(&request).await.map(Self) })
    }
}

pub(super) async fn authenticate(request: &HttpRequest) -> Result<Caller, ApiError> {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return Ok(caller.clone());
    }
    let (Some(authenticator), Some(limiter)) = (
        request.app_data::<web::Data<Authenticator>>(),
        request.app_data::<web::Data<RateLimiter>>(),
    ) else {
        return Err(ApiError::Unauthenticated(
            "this server has no authentication configured".to_owned(),
        ));
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes().to_vec());
    match authenticator.authenticate(authorization.as_deref()).await {
        Ok(caller) => {
            admit(request, limiter, &caller.actor.to_string())?;
            request.extensions_mut().insert(caller.clone());
            Ok(caller)
        }
        Err(AuthError::Unavailable(error)) => Err(ApiError::Store(error)),
        Err(error) => {
            // Failed attempts count against the client's address, so that guessing is slow.
            let peer = request
                .peer_addr()
                .map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip());
            admit(request, limiter, &format!("address:{peer}"))?;
            Err(ApiError::Unauthenticated(error.to_string()))
        }
    }
}

fn admit(request: &HttpRequest, limiter: &RateLimiter, key: &str) -> Result<(), ApiError> {
    match limiter.admit(key) {
        Ok(allowance) => {
            request.extensions_mut().insert(allowance);
            Ok(())
        }
        Err(limited) => {
            request
                .extensions_mut()
                .insert::<Allowance>(limited.allowance);
            Err(ApiError::RateLimited {
                per_second: limiter.per_second(),
                retry_after: limited.retry_after,
            })
        }
    }
}

/// `{namespace}` of the path, with the caller.
pub struct InNamespace {
    pub caller: Caller,
    pub namespace: String,
}

impl FromRequest for InNamespace {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let caller = authenticate(&request).await?;
            let namespace = request
                .match_info()
                .get("namespace")
                .unwrap_or_default()
                .to_owned();
            DnsLabel::parse(&namespace).map_err(|e| ApiError::BadParameter {
                parameter: "namespace",
                detail: e.to_string(),
            })?;
            Ok(Self { caller, namespace })
        })
    }
}

/// `{namespace}/{name}` of the path, with the caller. Reading checks that both are names
/// a registration can have (any other is simply not found, which also keeps bytes
/// PostgreSQL refuses, NUL, away from it); a write checks them with the document, so
/// that a bad one is named as the field it becomes.
pub struct ServicePath {
    pub caller: Caller,
    pub namespace: String,
    pub name: String,
}

impl ServicePath {
    /// The caller may read this service, or it is not found.
    pub fn readable(&self) -> Result<(), ApiError> {
        let (namespace, name) = (&self.namespace, &self.name);
        if DnsLabel::parse(namespace).is_err() || ServiceName::parse(name).is_err() {
            return Err(ApiError::NotFound {
                namespace: namespace.clone(),
                name: name.clone(),
            });
        }
        self.caller
            .may_read_item(namespace)
            .map_err(|refusal| ApiError::refused(refusal, namespace, name))
    }

    /// The caller may change this service.
    pub fn writable(&self) -> Result<(), ApiError> {
        self.caller
            .may_write(&self.namespace)
            .map_err(|refusal| ApiError::refused(refusal, &self.namespace, &self.name))
    }
}

impl FromRequest for ServicePath {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let caller = authenticate(&request).await?;
            let part = |key| request.match_info().get(key).unwrap_or_default().to_owned();
            Ok(Self {
                caller,
                namespace: part("namespace"),
                name: part("name"),
            })
        })
    }
}
