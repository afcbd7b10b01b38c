//! A small client of the REST API, for the command line and CI pipelines.

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::api::Problem;
use crate::resource::{ExternalServiceDocument, ExternalServiceList};

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

fn fields(errors: &[(String, String)]) -> String {
    errors
        .iter()
        .map(|(at, detail)| format!("\n  {at}: {detail}"))
        .collect()
}

/// What `apply` did to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
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
            http: reqwest::Client::new(),
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
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(version) = if_match {
            request = request.header(reqwest::header::IF_MATCH, format!("\"{version}\""));
        }
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

    /// Creates or replaces the document at `namespace/name`, telling what changed. With
    /// `check_version`, a document that carries `metadata.resourceVersion` replaces only
    /// that version (the server otherwise ignores it, so an exported document that is
    /// applied again later still applies).
    pub async fn apply(
        &self,
        namespace: &str,
        name: &str,
        document: &Value,
        check_version: bool,
    ) -> Result<Applied, ClientError> {
        let before = match self.get(namespace, name).await {
            Ok(doc) => doc.metadata.resource_version,
            Err(ClientError::Problem {
                status: StatusCode::NOT_FOUND,
                ..
            }) => None,
            Err(error) => return Err(error),
        };
        let expected = check_version.then(|| resource_version(document)).flatten();
        let response = self
            .send(
                Method::PUT,
                self.item_url(namespace, name),
                Some(document),
                expected.as_deref(),
            )
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
        let after: ExternalServiceDocument = Self::decode(response).await?;
        Ok(match (created, before == after.metadata.resource_version) {
            (true, _) => Applied::Created,
            (false, true) => Applied::Unchanged,
            (false, false) => Applied::Configured,
        })
    }

    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, self.item_url(namespace, name), None, None)
            .await
            .map(drop)
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

/// `metadata.resourceVersion`, which YAML may have read as a number.
fn resource_version(document: &Value) -> Option<String> {
    match &document["metadata"]["resourceVersion"] {
        Value::String(version) => Some(version.clone()),
        Value::Number(version) => Some(version.to_string()),
        _ => None,
    }
}
