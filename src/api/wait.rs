//! Waits: `GET .../{name}?waitFor=ready|synced|deleted` answers the moment the condition
//! holds, woken by every event of the service on whichever replica holds the request.

use std::time::Duration;

use actix_web::HttpResponse;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::resource::{WaitFor, unmet};
use crate::store::Store;

use super::ApiError;
use super::audit::Generations;
use super::events::{Feed, Scope};
use super::services::respond;

/// How long a wait lasts unless it says, and at most.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
const MAX_WAIT: Duration = Duration::from_secs(300);

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
pub struct Wait {
    condition: WaitFor,
    timeout: Duration,
    min_ready: Option<u32>,
}

impl WaitParams {
    pub fn parse(&self) -> Result<Option<Wait>, ApiError> {
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
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60)?),
            "h" => Duration::from_secs(number.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = tail;
    }
    (!text.is_empty()).then_some(total)
}

/// How often a wait looks again without an event: events are the way it learns, this
/// only bounds how long a stalled feed can keep it from answering.
const RECHECK: Duration = Duration::from_secs(5);

/// Answers the moment `namespace/name` meets the wait's condition: every event of the
/// service wakes the wait to look again. 408 when the timeout passes (or the server
/// stops) first. `deleted` holds once the registration is gone and the cluster has
/// deleted its `ExternalService` too.
pub async fn wait_for(
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
        let (document, reasons) = match (current, wait.condition) {
            (None, WaitFor::Deleted) => {
                if !store
                    .pending_change(namespace, name)
                    .await
                    .map_err(ApiError::Store)?
                {
                    return Ok(HttpResponse::NoContent().finish());
                }
                (None, vec!["the cluster has yet to delete it".to_owned()])
            }
            (None, _) => {
                return Err(ApiError::from_store(
                    crate::store::StoreError::NotFound,
                    namespace,
                    name,
                ));
            }
            (Some(service), condition) => {
                let document = service.clone().into_document();
                let reasons = unmet(&document, condition, wait.min_ready, None);
                if reasons.is_empty() {
                    return Ok(respond(HttpResponse::Ok(), service, Generations::default()));
                }
                (Some(Box::new(document)), reasons)
            }
        };
        let timed_out = tokio::select! {
            () = tokio::time::sleep_until(deadline) => true,
            () = tokio::time::sleep(RECHECK) => false,
            next = events.next() => next.map_err(ApiError::Store)?.is_none(),
        };
        if timed_out {
            // What the checks found says why an address is not ready; read once, here.
            let reasons = match (&document, wait.condition) {
                (Some(document), WaitFor::Ready) => {
                    let health = store
                        .health(namespace, name)
                        .await
                        .map_err(ApiError::Store)?;
                    unmet(document, WaitFor::Ready, wait.min_ready, health.as_ref())
                }
                _ => reasons,
            };
            return Err(ApiError::WaitTimedOut {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                condition: wait.condition.as_str(),
                timeout: wait.timeout,
                unmet: reasons,
                current: document,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_writes_them_and_never_overflow() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("18446744073709551615s1s"), None);
        assert_eq!(parse_duration("18446744073709551615h"), None);
    }
}
