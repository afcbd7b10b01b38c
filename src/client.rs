//! A small client of the REST API, for the command line and CI pipelines.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::api::Problem;
use crate::resource::{
    ExternalServiceDocument, ExternalServiceList, MaintenanceList, MaintenanceRequest,
    ServiceEvent, ServiceHealth, WaitFor,
};

/// What went wrong, each in one short sentence; a refusal from the server ends with its
/// status code, as in `no external service default/x (404)`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not reach {url}")]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} is not a valid server URL")]
    BadUrl { url: String },
    /// The server refused: the `detail` of its problem document (the status's reason
    /// when the answer was none, say a proxy's error page), then each refused field.
    #[error("{detail} ({}){}", .status.as_u16(), fields(.errors))]
    Problem {
        status: StatusCode,
        detail: String,
        errors: Vec<(String, String)>,
    },
    #[error("{namespace}/{name} is not {} after {}{}", .condition.as_str(), seconds(*.waited), reasons(.unmet))]
    TimedOut {
        namespace: String,
        name: String,
        condition: WaitFor,
        waited: Duration,
        unmet: Vec<String>,
    },
    #[error(
        "{namespace}/{name} is no longer at resourceVersion {resource_version} as the document says; get it again, or apply without --check-version to overwrite it (412)"
    )]
    Stale {
        namespace: String,
        name: String,
        resource_version: String,
    },
    #[error("unexpected answer from {url}")]
    Decode {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl ClientError {
    /// Whether asking again may well succeed: no answer, or the server busy or
    /// unavailable for now.
    fn is_transient(&self) -> bool {
        match self {
            Self::Send { .. } => true,
            Self::Problem { status, .. } => matches!(
                *status,
                StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            _ => false,
        }
    }
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}

fn reasons(unmet: &[String]) -> String {
    unmet.iter().map(|reason| format!("\n  {reason}")).collect()
}

fn fields(errors: &[(String, String)]) -> String {
    errors
        .iter()
        .map(|(at, detail)| format!("\n  {at}: {detail}"))
        .collect()
}

/// How long a connection may take, and a request (but a wait, which lasts its poll, and
/// an event stream, which lasts).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a wait's poll may run past the time it asked the server for.
const POLL_GRACE: Duration = Duration::from_secs(30);
/// How long a wait pauses before it asks again after the server was unreachable or busy.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What `apply` did (or, in a dry run, would do) to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

/// How `apply` writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Replace only the `metadata.resourceVersion` the document carries.
    pub check_version: bool,
    /// Validate and authorize only; write nothing.
    pub dry_run: bool,
    /// With `dry_run`: probe the addresses once, too.
    pub probe: bool,
}

/// What a server-sent event stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Event(ServiceEvent),
    End,
}

pub struct Client {
    server: String,
    token: Option<SecretString>,
    http: reqwest::Client,
}

impl Client {
    /// A client of `server` that sends `token` as its bearer token.
    pub fn new(server: &str, token: Option<SecretString>) -> Self {
        Self {
            server: server.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    fn item_url(&self, namespace: &str, name: &str) -> String {
        format!(
            "{}/api/v1/namespaces/{namespace}/external-services/{name}",
            self.server
        )
    }

    async fn send(
        &self,
        method: Method,
        url: String,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let request = self.http.request(method, &url).timeout(REQUEST_TIMEOUT);
        self.send_request(request, body, if_match).await
    }

    async fn send_request(
        &self,
        mut request: reqwest::RequestBuilder,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(version) = if_match {
            request = request.header(reqwest::header::IF_MATCH, format!("\"{version}\""));
        }
        self.answer(request).await
    }

    /// Sends `request`; a refusal becomes [`ClientError::Problem`].
    async fn answer(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        // The server's URL once, not the whole request URL twice.
        let response = request.send().await.map_err(|source| ClientError::Send {
            url: self.server.clone(),
            source: source.without_url(),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        // Anything but a problem document (say, a proxy's error page) leaves the status.
        let (detail, errors) = match response.json::<Problem>().await {
            Ok(problem) if problem.problem_type.ends_with("/wait-timed-out") => {
                let current = problem.current.as_deref();
                return Err(ClientError::TimedOut {
                    namespace: current
                        .and_then(|c| c.metadata.namespace.clone())
                        .unwrap_or_default(),
                    name: current
                        .and_then(|c| c.metadata.name.clone())
                        .unwrap_or_default(),
                    condition: WaitFor::Ready,
                    waited: Duration::ZERO,
                    unmet: problem.unmet,
                });
            }
            Ok(problem) => (
                problem.detail,
                problem
                    .errors
                    .into_iter()
                    .map(|e| (e.pointer.or(e.parameter).unwrap_or_default(), e.detail))
                    .collect(),
            ),
            Err(_) => (
                status.canonical_reason().unwrap_or("error").to_owned(),
                Vec::new(),
            ),
        };
        Err(ClientError::Problem {
            status,
            detail,
            errors,
        })
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let url = response.url().to_string();
        response
            .json()
            .await
            .map_err(|source| ClientError::Decode { url, source })
    }

    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ExternalServiceDocument, ClientError> {
        Self::decode(
            self.send(Method::GET, self.item_url(namespace, name), None, None)
                .await?,
        )
        .await
    }

    /// Creates or replaces the document at `namespace/name`, telling what changed (and,
    /// with `probe`, what probing its addresses found). With `check_version`, a document
    /// that carries `metadata.resourceVersion` replaces only that version (the server
    /// otherwise ignores it, so an exported document that is applied again later still
    /// applies).
    pub async fn apply(
        &self,
        namespace: &str,
        name: &str,
        document: &Value,
        options: ApplyOptions,
    ) -> Result<(Applied, Option<ServiceHealth>), ClientError> {
        let before = match self.get(namespace, name).await {
            Ok(doc) => Some(doc),
            Err(ClientError::Problem {
                status: StatusCode::NOT_FOUND,
                ..
            }) => None,
            Err(error) => return Err(error),
        };
        let expected = options
            .check_version
            .then(|| resource_version(document))
            .flatten();
        let mut url = self.item_url(namespace, name);
        if options.dry_run {
            url.push_str(if options.probe {
                "?dryRun=true&probe=true"
            } else {
                "?dryRun=true"
            });
        }
        let response = self
            .send(Method::PUT, url, Some(document), expected.as_deref())
            .await
            .map_err(|error| match (error, expected) {
                (
                    ClientError::Problem {
                        status: StatusCode::PRECONDITION_FAILED,
                        ..
                    },
                    Some(resource_version),
                ) => ClientError::Stale {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    resource_version,
                },
                (error, _) => error,
            })?;
        let created = response.status() == StatusCode::CREATED;
        let (after, probe) = if options.dry_run && options.probe {
            let result: crate::api::DryRunResult = Self::decode(response).await?;
            (result.document, Some(result.probe))
        } else {
            (
                Self::decode::<ExternalServiceDocument>(response).await?,
                None,
            )
        };
        let applied = match before {
            _ if created => Applied::Created,
            Some(before) if same(&before, &after) => Applied::Unchanged,
            _ => Applied::Configured,
        };
        Ok((applied, probe))
    }

    /// Waits until `namespace/name` meets `condition` or `timeout` passes, in long polls
    /// of `poll` at most (under the idle timeouts of proxies on the way). `progress` hears
    /// why it is not met yet after each poll.
    pub async fn wait(
        &self,
        namespace: &str,
        name: &str,
        condition: WaitFor,
        timeout: Duration,
        poll: Duration,
        mut progress: impl FnMut(&[String]),
    ) -> Result<Option<ExternalServiceDocument>, ClientError> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // Whole seconds, at least one: the server's unit.
            let this_poll = left.min(poll).max(Duration::from_secs(1));
            let url = reqwest::Url::parse_with_params(
                &self.item_url(namespace, name),
                [
                    ("waitFor", condition.as_str().to_owned()),
                    ("timeout", format!("{}s", this_poll.as_secs())),
                ],
            )
            .map_err(|_| ClientError::BadUrl {
                url: self.server.clone(),
            })?;
            let request = self.http.get(url).timeout(this_poll + POLL_GRACE);
            match self.send_request(request, None, None).await {
                Ok(response) if response.status() == StatusCode::NO_CONTENT => return Ok(None),
                Ok(response) => return Self::decode(response).await.map(Some),
                Err(ClientError::Problem {
                    status: StatusCode::NOT_FOUND,
                    ..
                }) if condition == WaitFor::Deleted => return Ok(None),
                Err(ClientError::TimedOut { unmet, .. }) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ClientError::TimedOut {
                            namespace: namespace.to_owned(),
                            name: name.to_owned(),
                            condition,
                            waited: started.elapsed(),
                            unmet,
                        });
                    }
                    progress(&unmet);
                }
                // A replica restarting during a rolling deploy, a proxy without upstream:
                // asked again until the deadline.
                Err(error) if error.is_transient() && tokio::time::Instant::now() < deadline => {
                    progress(&[format!("{}; retrying", crate::telemetry::chain(&error))]);
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    tokio::time::sleep(left.min(RETRY_PAUSE)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// What the health checks last found on every address.
    pub async fn health(&self, namespace: &str, name: &str) -> Result<ServiceHealth, ClientError> {
        let url = format!("{}/health", self.item_url(namespace, name));
        Self::decode(self.send(Method::GET, url, None, None).await?).await
    }

    /// The maintenance windows in force.
    pub async fn maintenance(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<MaintenanceList, ClientError> {
        let url = format!("{}/maintenance", self.item_url(namespace, name));
        Self::decode(self.send(Method::GET, url, None, None).await?).await
    }

    /// Takes addresses out of rotation until a time.
    pub async fn start_maintenance(
        &self,
        namespace: &str,
        name: &str,
        request: &MaintenanceRequest,
    ) -> Result<MaintenanceList, ClientError> {
        let url = format!("{}/maintenance", self.item_url(namespace, name));
        let body = serde_json::to_value(request).unwrap_or_default();
        Self::decode(self.send(Method::POST, url, Some(&body), None).await?).await
    }

    /// Ends the windows of `address` (all when `None`) now.
    pub async fn end_maintenance(
        &self,
        namespace: &str,
        name: &str,
        address: Option<&str>,
    ) -> Result<MaintenanceList, ClientError> {
        let base = format!("{}/maintenance", self.item_url(namespace, name));
        let url = reqwest::Url::parse_with_params(&base, address.map(|a| ("address", a)))
            .map_err(|_| ClientError::BadUrl { url: base.clone() })?;
        Self::decode(self.send(Method::DELETE, url.into(), None, None).await?).await
    }

    /// The events of `namespace/name`: with `follow`, from now on (reconnecting with the
    /// last id when the server ends the stream, as it does every ten minutes); without,
    /// every event the server still keeps, then [`StreamItem::End`]. Each is handed to
    /// `each` as it arrives.
    pub async fn events(
        &self,
        namespace: &str,
        name: &str,
        follow: bool,
        mut each: impl FnMut(StreamItem),
    ) -> Result<(), ClientError> {
        let base = format!("{}/events", self.item_url(namespace, name));
        let mut last: Option<String> = None;
        loop {
            let mut params: Vec<(&str, &str)> = Vec::new();
            match (&last, follow) {
                (Some(id), _) => params.push(("lastEventId", id)),
                (None, false) => params.push(("lastEventId", "0-0")),
                (None, true) => {}
            }
            if !follow {
                params.push(("follow", "false"));
            }
            let url = reqwest::Url::parse_with_params(&base, &params)
                .map_err(|_| ClientError::BadUrl { url: base.clone() })?;
            let request = self.http.get(url);
            let mut response = self.send_request(request, None, None).await?;
            let mut buffer: Vec<u8> = Vec::new();
            loop {
                let chunk = response.chunk().await.map_err(|source| ClientError::Send {
                    url: self.server.clone(),
                    source: source.without_url(),
                })?;
                let Some(chunk) = chunk else {
                    break;
                };
                buffer.extend_from_slice(&chunk);
                // A frame ends with a blank line; one that grows past 1 MiB is no event.
                while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                    let frame: Vec<u8> = buffer.drain(..end + 2).collect();
                    let frame = String::from_utf8_lossy(&frame);
                    let data: String = frame
                        .lines()
                        .filter_map(|line| line.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if let Ok(event) = serde_json::from_str::<ServiceEvent>(&data) {
                        last = Some(event.id.clone());
                        each(StreamItem::Event(event));
                    }
                }
                if buffer.len() > MAX_FRAME {
                    buffer.clear();
                }
            }
            if !follow {
                each(StreamItem::End);
                return Ok(());
            }
        }
    }

    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<(), ClientError> {
        let mut url = self.item_url(namespace, name);
        if dry_run {
            url.push_str("?dryRun=true");
        }
        self.send(Method::DELETE, url, None, None).await.map(drop)
    }

    /// Every registration, in one namespace or all, following continue tokens.
    pub async fn list(
        &self,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Vec<ExternalServiceDocument>, ClientError> {
        let base = match namespace {
            Some(namespace) => format!(
                "{}/api/v1/namespaces/{namespace}/external-services",
                self.server
            ),
            None => format!("{}/api/v1/external-services", self.server),
        };
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = vec![("limit", "500".to_owned())];
            params.extend(selector.map(|s| ("labelSelector", s.to_owned())));
            params.extend(token.map(|t| ("continue", t)));
            let url = reqwest::Url::parse_with_params(&base, &params)
                .map_err(|_| ClientError::BadUrl { url: base.clone() })?;
            let page: ExternalServiceList =
                Self::decode(self.send(Method::GET, url.into(), None, None).await?).await?;
            items.extend(page.items);
            match page.metadata.continue_token {
                Some(next) => token = Some(next),
                None => return Ok(items),
            }
        }
    }
}

/// The most a frame of an event stream may hold.
const MAX_FRAME: usize = 1024 * 1024;

/// Whether two versions of a document say the same (a dry run's has no resource version
/// to compare).
fn same(before: &ExternalServiceDocument, after: &ExternalServiceDocument) -> bool {
    match (
        &before.metadata.resource_version,
        &after.metadata.resource_version,
    ) {
        (Some(a), Some(b)) => a == b,
        _ => {
            before.spec == after.spec
                && before.metadata.labels == after.metadata.labels
                && before.metadata.annotations == after.metadata.annotations
        }
    }
}

/// `metadata.resourceVersion`, which YAML may have read as a number.
fn resource_version(document: &Value) -> Option<String> {
    match &document["metadata"]["resourceVersion"] {
        Value::String(version) => Some(version.clone()),
        Value::Number(version) => Some(version.to_string()),
        _ => None,
    }
}
