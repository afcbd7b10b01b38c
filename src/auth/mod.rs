//! Who calls: the platform admin's token, API tokens, OIDC ID tokens and Kubernetes
//! service-account tokens, each mapped to a team and a role ([`Caller`]).

mod access;
mod fresh;
pub mod oidc;
pub mod review;
pub mod token;

pub use access::{Actor, Caller, Grant, Refusal, Role};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use crate::store::{Store, StoreError};
use crate::sync::lock;
use fresh::Fresh;

/// How long a replica trusts what it learnt about a token or a team: a revoked token,
/// a deleted team or a namespace taken away stops working within this time on every
/// replica, and a busy token costs one database round trip per this time, not per
/// request.
pub const TRUST_FOR: Duration = Duration::from_millis(500);
/// Tokens and teams remembered at most, per replica.
const REMEMBERED: usize = 10_000;
/// The longest bearer token read; a longer one is refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send Authorization: Bearer <token>")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("the token is unknown, expired or revoked")]
    Rejected,
    #[error("{0}")]
    Invalid(String),
    #[error("could not check the token")]
    Unavailable(#[source] StoreError),
}

/// What every replica shares: the admin token's hash, what it learnt recently, and the
/// verifiers of tokens that other systems issue.
pub struct Shared {
    admin: Option<[u8; 32]>,
    tokens: Mutex<Fresh<[u8; 32], Caller>>,
    teams: Mutex<Fresh<String, Arc<[String]>>>,
    oidc: Option<oidc::Verifier>,
    review: Option<review::Reviewer>,
}

impl Shared {
    pub fn new(
        admin_token: Option<&str>,
        oidc: Option<oidc::Verifier>,
        review: Option<review::Reviewer>,
    ) -> Self {
        Self {
            admin: admin_token.map(token::hash),
            tokens: Mutex::new(Fresh::new(TRUST_FOR, REMEMBERED)),
            teams: Mutex::new(Fresh::new(TRUST_FOR, REMEMBERED)),
            oidc,
            review,
        }
    }
}

/// Authenticates callers: [`Shared`] state, and the store of the worker it runs on.
#[derive(Clone)]
pub struct Authenticator {
    shared: Arc<Shared>,
    store: Store,
}

impl Authenticator {
    pub fn new(shared: Arc<Shared>, store: Store) -> Self {
        Self { shared, store }
    }

    /// The caller an `Authorization` header names.
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, AuthError> {
        let token = bearer(authorization.ok_or(AuthError::Missing)?)?;
        let hash = token::hash(token);
        if self.shared.admin == Some(hash) {
            return Ok(Caller {
                actor: Actor::PlatformAdmin,
                grant: Grant::Platform,
            });
        }
        if token.starts_with(token::PREFIX) {
            return self.api_token(hash).await;
        }
        if let Some(oidc) = &self.shared.oidc
            && let Some(issuer) = oidc.issuer_of(token)
        {
            let identity = oidc.verify(issuer, token).await?;
            return self.member(identity).await;
        }
        if let Some(review) = &self.shared.review {
            let identity = review.review(token, hash).await?;
            return self.member(identity).await;
        }
        Err(AuthError::Rejected)
    }

    async fn api_token(&self, hash: [u8; 32]) -> Result<Caller, AuthError> {
        if let Some(caller) = lock(&self.shared.tokens).get(&hash) {
            return Ok(caller);
        }
        let grant = self
            .store
            .use_token(&hash)
            .await
            .map_err(AuthError::Unavailable)?
            .ok_or(AuthError::Rejected)?;
        let role = Role::parse(&grant.role).ok_or(AuthError::Rejected)?;
        let caller = Caller {
            actor: Actor::Token(grant.id),
            grant: Grant::Team {
                team: grant.team,
                role,
                namespaces: grant.namespaces.into(),
            },
        };
        // A token that expires sooner than the trust period is looked up again.
        let trusted = grant
            .expires_at
            .is_none_or(|at| at > Utc::now() + TRUST_FOR);
        if trusted {
            lock(&self.shared.tokens).insert(hash, caller.clone());
        }
        Ok(caller)
    }

    /// A caller another system vouched for, as a member of the team a rule named.
    async fn member(&self, identity: Identity) -> Result<Caller, AuthError> {
        let cached = lock(&self.shared.teams).get(&identity.team);
        let namespaces = match cached {
            Some(namespaces) => namespaces,
            None => {
                let team = match self.store.get_team(&identity.team).await {
                    Ok(team) => team,
                    Err(StoreError::NotFound) => {
                        return Err(AuthError::Invalid(format!(
                            "the identity maps to team {}, which does not exist",
                            identity.team
                        )));
                    }
                    Err(error) => return Err(AuthError::Unavailable(error)),
                };
                let namespaces: Arc<[String]> = team.namespaces.into();
                lock(&self.shared.teams).insert(identity.team.clone(), namespaces.clone());
                namespaces
            }
        };
        Ok(Caller {
            actor: identity.actor,
            grant: Grant::Team {
                team: identity.team,
                role: identity.role,
                namespaces,
            },
        })
    }
}

/// The auth configuration file: trusted OIDC issuers and service accounts.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub oidc: Vec<oidc::IssuerConfig>,
    #[serde(default)]
    pub service_accounts: Vec<review::AccountRule>,
}

impl AuthConfig {
    /// Reads the file (YAML or JSON, 1 MiB at most).
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        if text.len() > 1024 * 1024 {
            return Err(format!("{} is over 1 MiB", path.display()));
        }
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Who another system says a caller is, and the team and role a rule gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub actor: Actor,
    pub team: String,
    pub role: Role,
}

/// The token of `Bearer <token>` (the scheme in any case, RFC 9110).
pub fn bearer(header: &[u8]) -> Result<&str, AuthError> {
    if header.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = header.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    let visible = |c: char| c.is_ascii_graphic();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || !token.chars().all(visible) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_bearer_header_yields_a_token() {
        assert_eq!(bearer(b"Bearer abc").ok(), Some("abc"));
        assert_eq!(bearer(b"bearer  abc ").ok(), Some("abc"));
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Bearer \xff",
            b"abc",
        ] {
            assert!(matches!(bearer(bad), Err(AuthError::Malformed)), "{bad:?}");
        }
        assert!(bearer(&vec![b'a'; MAX_TOKEN_BYTES + 1]).is_err());
    }
}
