//! Errors as RFC 9457 problem details (`application/problem+json`).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::ValidationErrors;
use crate::resource::ExternalServiceDocument;
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
// Deserialize: the CLI's client reads it back.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    #[schema(example = "https://extsvc.dev/problems/invalid-document")]
    pub problem_type: String,
    #[schema(example = "The document is not valid")]
    pub title: String,
    #[schema(example = 422)]
    pub status: u16,
    #[schema(example = "1 field is invalid")]
    pub detail: String,
    /// Every refused field or parameter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// A wait that timed out: why its condition is not met, one reason each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmet: Vec<String>,
    /// A wait that timed out: the service as it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Box<ExternalServiceDocument>>,
}

/// One refused field (`pointer`, into the body) or query parameter (`parameter`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProblemField {
    /// JSON pointer (RFC 6901) to the field in the request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/spec/ports/0/port")]
    pub pointer: Option<String>,
    /// Name of the query parameter or header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    #[schema(example = "must be between 1 and 65535")]
    pub detail: String,
}

/// A wait's timeout as people write it: `2 s`, `1.5 s`, `300 ms`.
fn waited(timeout: std::time::Duration) -> String {
    match timeout.subsec_millis() {
        0 => format!("{} s", timeout.as_secs()),
        _ if timeout.as_secs() == 0 => format!("{} ms", timeout.as_millis()),
        _ => format!("{:.1} s", timeout.as_secs_f64()),
    }
}

/// Everything that can go wrong in a request, each mapped to one status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not well-formed {format}: {detail}")]
    MalformedBody {
        format: &'static str,
        detail: String,
    },
    #[error("the body must be at most {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the body could not be read")]
    ReadBody,
    #[error("the body did not arrive within {seconds} s")]
    BodyTimeout { seconds: u64 },
    #[error("the content type must be application/json or application/yaml")]
    UnsupportedMediaType,
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error("{detail}")]
    BadParameter {
        parameter: &'static str,
        detail: String,
    },
    #[error("no external service {namespace}/{name}")]
    NotFound { namespace: String, name: String },
    /// Not the caller's to see: answered exactly like [`ApiError::NotFound`].
    #[error("no external service {namespace}/{name}")]
    Hidden { namespace: String, name: String },
    #[error("no {0}")]
    NoSuch(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "too many requests: at most {per_second} a second on average; try again in {retry_after} s"
    )]
    RateLimited { per_second: u32, retry_after: u64 },
    #[error("external service {namespace}/{name} already exists")]
    AlreadyExists { namespace: String, name: String },
    #[error(
        "namespace {namespace} already holds {limit} external services, the most allowed (the server's --max-services-per-namespace)"
    )]
    NamespaceFull { namespace: String, limit: u32 },
    #[error("the external service changed since the ETag in If-Match")]
    PreconditionFailed,
    #[error(
        "external service {namespace}/{name} was made in the cluster; change it there, e.g. with kubectl"
    )]
    ReadOnly { namespace: String, name: String },
    #[error("{namespace}/{name} is not {condition} after {}", waited(*.timeout))]
    WaitTimedOut {
        namespace: String,
        name: String,
        condition: &'static str,
        timeout: std::time::Duration,
        unmet: Vec<String>,
        current: Option<Box<ExternalServiceDocument>>,
    },
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed on this route")]
    MethodNotAllowed { allow: &'static str },
    #[error(transparent)]
    Store(StoreError),
}

impl ApiError {
    /// Why a caller may not touch `namespace/name`.
    pub fn refused(refusal: crate::auth::Refusal, namespace: &str, name: &str) -> Self {
        match refusal {
            crate::auth::Refusal::Hidden => Self::Hidden {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            crate::auth::Refusal::Forbidden(reason) => Self::Forbidden(reason),
        }
    }

    /// Whether this answers a request the caller was not allowed to make.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Hidden { .. }
                | Self::Unauthenticated(_)
                | Self::Forbidden(_)
                | Self::RateLimited { .. }
        )
    }

    /// The problem type's last segment (`not-found`), as the audit log records it.
    pub fn slug(&self) -> &'static str {
        self.kind().0
    }

    /// Maps a store error for the registration `namespace/name`.
    pub fn from_store(error: StoreError, namespace: &str, name: &str) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            StoreError::AlreadyExists => Self::AlreadyExists {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            StoreError::NamespaceFull { limit } => Self::NamespaceFull {
                namespace: namespace.to_owned(),
                limit,
            },
            StoreError::TeamFull { team, limit } => Self::QuotaExceeded(format!(
                "team {team} already holds {limit} external services, the most allowed"
            )),
            StoreError::PreconditionFailed => Self::PreconditionFailed,
            StoreError::ReadOnly => Self::ReadOnly {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            other => Self::Store(other),
        }
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::MalformedBody { .. } => ("malformed-body", "The body is not well-formed"),
            Self::BodyTooLarge { .. } => ("body-too-large", "The body is too large"),
            Self::ReadBody => ("unreadable-body", "The body could not be read"),
            Self::BodyTimeout { .. } => ("body-timeout", "The body arrived too slowly"),
            Self::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            Self::Invalid(_) => ("invalid-document", "The document is not valid"),
            Self::BadParameter { .. } => ("invalid-parameter", "A parameter is not valid"),
            Self::NotFound { .. } | Self::Hidden { .. } | Self::NoSuch(_) => {
                ("not-found", "Not found")
            }
            Self::Conflict(_) => ("conflict", "Conflict"),
            Self::Unauthenticated(_) => ("unauthenticated", "Unauthenticated"),
            Self::Forbidden(_) => ("forbidden", "Forbidden"),
            Self::QuotaExceeded(_) => ("quota-exceeded", "Quota exceeded"),
            Self::RateLimited { .. } => ("rate-limited", "Too many requests"),
            Self::Unavailable(_) => ("unavailable", "The service is unavailable"),
            Self::AlreadyExists { .. } => ("already-exists", "Already exists"),
            Self::NamespaceFull { .. } => ("quota-exceeded", "The namespace is full"),
            Self::PreconditionFailed => ("precondition-failed", "Precondition failed"),
            Self::ReadOnly { .. } => ("read-only", "Read-only: made in the cluster"),
            Self::WaitTimedOut { .. } => ("wait-timed-out", "The condition was not met in time"),
            Self::NoRoute => ("not-found", "Not found"),
            Self::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            Self::Store(StoreError::Contended) => ("conflict", "Conflicting concurrent change"),
            Self::Store(_) => ("unavailable", "The service is unavailable"),
        }
    }

    fn problem(&self) -> Problem {
        let (slug, title) = self.kind();
        let errors = match self {
            Self::Invalid(ValidationErrors(fields)) => fields
                .iter()
                .map(|field| ProblemField {
                    pointer: Some(field.pointer.clone()),
                    parameter: None,
                    detail: field.detail.clone(),
                })
                .collect(),
            Self::BadParameter { parameter, detail } => vec![ProblemField {
                pointer: None,
                parameter: Some((*parameter).to_owned()),
                detail: detail.clone(),
            }],
            _ => Vec::new(),
        };
        let detail = match self {
            Self::Invalid(ValidationErrors(fields)) if fields.len() == 1 => {
                "1 field is invalid".to_owned()
            }
            Self::Invalid(ValidationErrors(fields)) => {
                format!("{} fields are invalid", fields.len())
            }
            // Internal causes stay in the log, not in the answer.
            Self::Store(_) => "the database is unavailable; try again later".to_owned(),
            other => other.to_string(),
        };
        let (unmet, current) = match self {
            Self::WaitTimedOut { unmet, current, .. } => (unmet.clone(), current.clone()),
            _ => (Vec::new(), None),
        };
        Problem {
            problem_type: format!("https://extsvc.dev/problems/{slug}"),
            title: title.to_owned(),
            status: self.status_code().as_u16(),
            detail,
            errors,
            unmet,
            current,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedBody { .. } | Self::BadParameter { .. } | Self::ReadBody => {
                StatusCode::BAD_REQUEST
            }
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } | Self::WaitTimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound { .. } | Self::Hidden { .. } | Self::NoSuch(_) | Self::NoRoute => {
                StatusCode::NOT_FOUND
            }
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::NamespaceFull { .. } | Self::Forbidden(_) | Self::QuotaExceeded(_) => {
                StatusCode::FORBIDDEN
            }
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Conflict(_)
            | Self::AlreadyExists { .. }
            | Self::ReadOnly { .. }
            | Self::Store(StoreError::Contended) => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Store(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Store(error) = self {
            tracing::error!(error = %crate::telemetry::chain(error), "request failed in the store");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        match self {
            Self::Store(_) | Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            Self::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            Self::Unauthenticated(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"extsvc\""),
                ));
            }
            Self::RateLimited { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        response.json(self.problem())
    }
}
