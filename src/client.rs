//! A small client of the REST API, for the command line and CI pipelines.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::api::Problem;
use crate::resource::{ExternalServiceDocument, ExternalServiceList};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not reach {url}")]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{status}: {title}: {detail}{}", fields(.errors))]
    Problem {
        status: StatusCode,
        title: String,
        detail: String,
        errors: Vec<(String, String)>,
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
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str) -> Self {
        Self {
            server: server.trim_end_matches('/').to_owned(),
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
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|source| ClientError::Send {
            url: url.clone(),
            source,
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        // Anything but a problem document (say, a proxy's error page) leaves only the status.
        let (title, detail, errors) = match response.json::<Problem>().await {
            Ok(problem) => (
                problem.title,
                problem.detail,
                problem
                    .errors
                    .into_iter()
                    .map(|e| (e.pointer.or(e.parameter).unwrap_or_default(), e.detail))
                    .collect(),
            ),
            Err(_) => Default::default(),
        };
        Err(ClientError::Problem {
            status,
            title,
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
            self.send(Method::GET, self.item_url(namespace, name), None)
                .await?,
        )
        .await
    }

    /// Creates or replaces the document at `namespace/name`, telling what changed.
    pub async fn apply(
        &self,
        namespace: &str,
        name: &str,
        document: &Value,
    ) -> Result<Applied, ClientError> {
        let before = match self.get(namespace, name).await {
            Ok(doc) => doc.metadata.resource_version,
            Err(ClientError::Problem {
                status: StatusCode::NOT_FOUND,
                ..
            }) => None,
            Err(error) => return Err(error),
        };
        let response = self
            .send(Method::PUT, self.item_url(namespace, name), Some(document))
            .await?;
        let created = response.status() == StatusCode::CREATED;
        let after: ExternalServiceDocument = Self::decode(response).await?;
        Ok(match (created, before == after.metadata.resource_version) {
            (true, _) => Applied::Created,
            (false, true) => Applied::Unchanged,
            (false, false) => Applied::Configured,
        })
    }

    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, self.item_url(namespace, name), None)
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
            let url = reqwest::Url::parse_with_params(&base, &params).map_err(|_| {
                ClientError::Problem {
                    status: StatusCode::BAD_REQUEST,
                    title: "Bad server URL".to_owned(),
                    detail: base.clone(),
                    errors: Vec::new(),
                }
            })?;
            let page: ExternalServiceList =
                Self::decode(self.send(Method::GET, url.into(), None).await?).await?;
            items.extend(page.items);
            match page.metadata.continue_token {
                Some(next) => token = Some(next),
                None => return Ok(items),
            }
        }
    }
}
