//! Reading a document from a request body: media type, size limit, JSON or YAML, the
//! original operator's shape, and errors that point at the offending field.

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::domain::{FieldError, Pointer, ValidationErrors};
use crate::resource::{ExternalServiceDocument, LegacyDocument, is_legacy};

use super::ApiError;

/// Bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The whole body must arrive within this, however it trickles in (slowloris).
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The most reserved up front for a declared `Content-Length`; more grows as it arrives.
const MAX_PREALLOCATED: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

impl Format {
    fn of(request: &HttpRequest) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::UnsupportedMediaType)?;
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(Self::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(Self::Yaml),
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }
}

/// A document read from a body, and whether it arrived in the original operator's shape
/// (whose field errors are then reported at the fields the user wrote).
#[derive(Debug)]
pub struct ReceivedDocument {
    pub document: ExternalServiceDocument,
    pub legacy: bool,
}

impl ReceivedDocument {
    /// Rewrites the pointers of validation errors found after conversion.
    pub fn locate(&self, errors: ValidationErrors) -> ValidationErrors {
        if !self.legacy {
            return errors;
        }
        ValidationErrors(
            errors
                .0
                .into_iter()
                .map(|e| FieldError {
                    pointer: LegacyDocument::original_pointer(&e.pointer),
                    detail: e.detail,
                })
                .collect(),
        )
    }
}

/// Reads a body that must be a JSON or YAML object, naming every field that does not
/// decode into `T`.
pub async fn read_body<T: DeserializeOwned>(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    decode(read_object(request, payload).await?)
}

/// Reads a body: JSON or YAML, an object, within the size and time limits, without NUL.
/// Nothing is parsed before the media type and size pass.
async fn read_object(
    request: &HttpRequest,
    mut payload: web::Payload,
) -> Result<serde_json::Value, ApiError> {
    let format = Format::of(request)?;
    let too_large = ApiError::BodyTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(too_large);
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(4096).min(MAX_PREALLOCATED));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| ApiError::ReadBody)?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::BodyTimeout {
            seconds: BODY_READ_TIMEOUT.as_secs(),
        })??;

    let value: serde_json::Value = match format {
        Format::Json => serde_json::from_slice(&body).map_err(|e| ApiError::MalformedBody {
            format: "JSON",
            detail: e.to_string(),
        })?,
        Format::Yaml => {
            let text = std::str::from_utf8(&body).map_err(|e| ApiError::MalformedBody {
                format: "YAML",
                detail: e.to_string(),
            })?;
            serde_saphyr::from_str(text).map_err(|e| ApiError::MalformedBody {
                format: "YAML",
                detail: e.to_string(),
            })?
        }
    };
    if !value.is_object() {
        return Err(ValidationErrors(vec![FieldError {
            pointer: String::new(),
            detail: "must be an object".to_owned(),
        }])
        .into());
    }
    if let Some(pointer) = find_nul(&value, Pointer::root()) {
        return Err(ValidationErrors(vec![FieldError {
            pointer: pointer.as_str().to_owned(),
            detail: "must not contain the NUL character".to_owned(),
        }])
        .into());
    }
    Ok(value)
}

/// Reads and decodes the body. Nothing is parsed before the media type and size pass.
pub async fn read_document(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<ReceivedDocument, ApiError> {
    let value = read_object(request, payload).await?;
    if is_legacy(&value) {
        let legacy: LegacyDocument = decode(value)?;
        Ok(ReceivedDocument {
            document: legacy.convert(),
            legacy: true,
        })
    } else {
        Ok(ReceivedDocument {
            document: decode(value)?,
            legacy: false,
        })
    }
}

/// The first string (or key) holding U+0000, which PostgreSQL cannot store in `jsonb`.
fn find_nul(value: &serde_json::Value, at: Pointer) -> Option<Pointer> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_nul(v, at.index(i))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let at = at.field(k);
            if k.contains('\0') {
                Some(at)
            } else {
                find_nul(v, at)
            }
        }),
        _ => None,
    }
}

/// At most this many fields that do not fit are listed in one answer.
const MAX_SHAPE_ERRORS: usize = 50;

/// Decodes a well-formed value into `T`, naming every field that does not fit. serde
/// stops at the first; to find the next one, a field that does not fit is taken out of
/// the document and decoding tried again, as long as it is an object member that is
/// not required (taking out a required one would only report it missing).
fn decode<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, ApiError> {
    let mut errors: Vec<FieldError> = Vec::new();
    while errors.len() < MAX_SHAPE_ERRORS {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(decoded) if errors.is_empty() => return Ok(decoded),
            Ok(_) => break,
            Err(error) => error,
        };
        let (field, missing) = shape_error(&error);
        // A required field taken out for being of the wrong type is now missing: it
        // was reported already, and decoding cannot go past it.
        if errors.iter().any(|e| e.pointer == field.pointer) {
            break;
        }
        let again = !missing && take_out(&mut value, &field.pointer);
        errors.push(field);
        if !again {
            break;
        }
    }
    Err(ApiError::Invalid(ValidationErrors(errors)))
}

/// The field a decoding error names, and whether it is missing.
fn shape_error(error: &serde_path_to_error::Error<serde_json::Error>) -> (FieldError, bool) {
    let mut at = Pointer::root();
    for segment in error.path().iter() {
        use serde_path_to_error::Segment;
        at = match segment {
            Segment::Seq { index } => at.index(*index),
            Segment::Map { key } => at.field(key),
            Segment::Enum { .. } | Segment::Unknown => at,
        };
    }
    let mut pointer = at.as_str().to_owned();
    let message = error.inner().to_string();
    // serde names a missing field in its message; point at the field itself.
    match missing_field(&message) {
        Some(field) => {
            pointer.push('/');
            pointer.push_str(field);
            let detail = "is required".to_owned();
            (FieldError { pointer, detail }, true)
        }
        None => (
            FieldError {
                pointer,
                detail: message,
            },
            false,
        ),
    }
}

/// Removes the object member at `pointer`; false when there is none.
fn take_out(value: &mut serde_json::Value, pointer: &str) -> bool {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return false;
    };
    let key = key.replace("~1", "/").replace("~0", "~");
    value
        .pointer_mut(parent)
        .and_then(serde_json::Value::as_object_mut)
        .is_some_and(|object| object.remove(&key).is_some())
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}
