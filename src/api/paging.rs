//! Pages of listings: a `limit`, and an opaque `continue` token holding the last
//! (namespace, name) seen, so that each page starts strictly after the previous one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::{DnsLabel, ServiceName};

use super::ApiError;

/// Reads `limit`: `default` when absent, else a whole number from 1 to `max`.
pub fn limit(value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(value) => value
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| ApiError::BadParameter {
                parameter: "limit",
                detail: format!("must be a whole number between 1 and {max}"),
            }),
    }
}

pub fn decode_continue(token: Option<&str>) -> Result<Option<(String, String)>, ApiError> {
    let Some(token) = token else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let (namespace, name) = text.split_once('/')?;
            DnsLabel::parse(namespace).ok()?;
            ServiceName::parse(name).ok()?;
            Some(Some((namespace.to_owned(), name.to_owned())))
        })
        .ok_or_else(|| ApiError::BadParameter {
            parameter: "continue",
            detail: "is not a token from a previous page".to_owned(),
        })
}

/// Trims a page read with one row more than `limit`, and returns the token of the next
/// page when that extra row shows there is one.
pub fn finish_page<T>(
    page: &mut Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> (&str, &str),
) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = page.len() > limit;
    page.truncate(limit);
    let last = page.last().filter(|_| more)?;
    let (namespace, name) = key(last);
    Some(URL_SAFE_NO_PAD.encode(format!("{namespace}/{name}")))
}
