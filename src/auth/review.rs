//! Kubernetes service-account tokens, checked by the API server (TokenReview), so that
//! a pipeline running in the cluster (Tekton, Argo Workflows) needs no other secret.

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use serde::Deserialize;

use super::fresh::Fresh;
use super::{Actor, AuthError, Identity, Role};
use crate::sync::lock;

/// A review is trusted this long: a deleted service account or Secret stops working
/// within it.
const TRUST_FOR: Duration = Duration::from_secs(10);
const REMEMBERED: usize = 10_000;
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// A service account and what it may do, as the auth configuration file says.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountRule {
    pub namespace: String,
    pub name: String,
    pub team: String,
    pub role: Role,
}

pub struct Reviewer {
    client: kube::Client,
    rules: Vec<AccountRule>,
    reviewed: Mutex<Fresh<[u8; 32], Identity>>,
}

impl Reviewer {
    pub fn new(client: kube::Client, rules: Vec<AccountRule>) -> Self {
        Self {
            client,
            rules,
            reviewed: Mutex::new(Fresh::new(TRUST_FOR, REMEMBERED)),
        }
    }

    /// Who the API server says holds `token`, as the rules map it; `hash` keys the
    /// memory of recent answers, so that the token itself is not kept.
    pub async fn review(&self, token: &str, hash: [u8; 32]) -> Result<Identity, AuthError> {
        if self.rules.is_empty() {
            return Err(AuthError::Rejected);
        }
        if let Some(identity) = lock(&self.reviewed).get(&hash) {
            return Ok(identity);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let api = Api::<TokenReview>::all(self.client.clone());
        let answer = tokio::time::timeout(
            REVIEW_TIMEOUT,
            api.create(&PostParams::default(), &review),
        )
        .await
        .map_err(|_| {
            AuthError::Invalid("the Kubernetes API did not review the token in time".to_owned())
        })?
        .map_err(|error| {
            tracing::warn!(error = %crate::telemetry::chain(&error), "a TokenReview failed");
            AuthError::Invalid("the Kubernetes API could not review the token".to_owned())
        })?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(AuthError::Rejected);
        }
        let username = status
            .user
            .and_then(|user| user.username)
            .unwrap_or_default();
        let (namespace, name) = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .ok_or(AuthError::Rejected)?;
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.namespace == namespace && rule.name == name)
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "no rule maps service account {namespace}/{name} to a team"
                ))
            })?;
        let identity = Identity {
            actor: Actor::ServiceAccount {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            team: rule.team.clone(),
            role: rule.role,
        };
        lock(&self.reviewed).insert(hash, identity.clone());
        Ok(identity)
    }
}
