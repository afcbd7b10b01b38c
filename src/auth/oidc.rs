//! OIDC ID tokens from trusted issuers (GitHub Actions, GitLab CI, any OIDC provider):
//! the signature against the issuer's published keys, `iss`, `aud`, `exp` and `nbf`,
//! the algorithm pinned to the key's, and rules that map claims to a team and a role.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::{Actor, AuthError, Identity, Role};

/// Keys are fetched again after this long, and at once for a key id not seen yet (at
/// most once per [`REFETCH_AFTER`]).
const KEYS_FOR: Duration = Duration::from_secs(3600);
const REFETCH_AFTER: Duration = Duration::from_secs(1);
/// A discovery document or key set larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// One trusted issuer, as the auth configuration file describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerConfig {
    /// `iss`, exactly.
    pub issuer: String,
    /// The `aud` the tokens must carry (what the CI job asks for).
    pub audience: String,
    /// The key set; by default found through the issuer's discovery document.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    pub rules: Vec<ClaimRule>,
}

/// Claims that must all be equal to these values, and what a match grants. The first
/// rule that matches wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimRule {
    pub claims: BTreeMap<String, String>,
    pub team: String,
    pub role: Role,
}

struct Issuer {
    config: IssuerConfig,
    keys: tokio::sync::Mutex<Keys>,
}

#[derive(Default)]
struct Keys {
    set: Vec<Jwk>,
    /// The last fetch that succeeded.
    fetched: Option<Instant>,
    /// The last fetch tried, whatever its end: an issuer that is down or slow is asked
    /// again at most once per [`REFETCH_AFTER`], not on every request.
    tried: Option<Instant>,
}

/// Verifies ID tokens of the configured issuers.
pub struct Verifier {
    issuers: Vec<Issuer>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl Verifier {
    pub fn new(issuers: Vec<IssuerConfig>) -> Result<Self, String> {
        for issuer in &issuers {
            for url in std::iter::once(&issuer.issuer).chain(&issuer.jwks_uri) {
                check_url(url)?;
            }
            if issuer.rules.is_empty() {
                return Err(format!("issuer {} has no rules", issuer.issuer));
            }
        }
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("could not build an HTTP client: {error}"))?;
        Ok(Self {
            issuers: issuers
                .into_iter()
                .map(|config| Issuer {
                    config,
                    keys: tokio::sync::Mutex::default(),
                })
                .collect(),
            http,
        })
    }

    /// The index of the configured issuer a token claims to come from (unverified: only
    /// to choose whom to verify it with).
    pub fn issuer_of(&self, token: &str) -> Option<usize> {
        let payload = token.split('.').nth(1)?;
        let claims: Unverified =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let iss = claims.iss?;
        self.issuers.iter().position(|i| i.config.issuer == iss)
    }

    pub async fn verify(&self, issuer: usize, token: &str) -> Result<Identity, AuthError> {
        let issuer = self.issuers.get(issuer).ok_or(AuthError::Rejected)?;
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let jwk = self.key(issuer, header.kid.as_deref()).await?;
        let algorithm = algorithm_of(&jwk).ok_or_else(|| {
            AuthError::Invalid("the issuer's key has no usable algorithm".to_owned())
        })?;
        if header.alg != algorithm {
            return Err(AuthError::Invalid(format!(
                "the token says alg {:?}, its key is for {algorithm:?}",
                header.alg
            )));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(invalid)?;
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_audience(&[&issuer.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<BTreeMap<String, Value>>(token, &key, &validation)
            .map_err(invalid)?
            .claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let rule = issuer
            .config
            .rules
            .iter()
            .find(|rule| matches(rule, &claims))
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "no rule of issuer {} maps subject {subject} to a team",
                    issuer.config.issuer
                ))
            })?;
        Ok(Identity {
            actor: Actor::Oidc {
                issuer: issuer.config.issuer.clone(),
                subject,
            },
            team: rule.team.clone(),
            role: rule.role,
        })
    }

    /// The issuer's key with this id (or its only key, for a token naming none),
    /// fetching the key set when it is old or does not know the id.
    async fn key(&self, issuer: &Issuer, kid: Option<&str>) -> Result<Jwk, AuthError> {
        let mut keys = issuer.keys.lock().await;
        let stale = keys.fetched.is_none_or(|at| at.elapsed() > KEYS_FOR);
        let unknown = find(&keys.set, kid).is_none();
        let may_fetch = keys.tried.is_none_or(|at| at.elapsed() > REFETCH_AFTER);
        if may_fetch && (stale || unknown) {
            keys.tried = Some(Instant::now());
            match self.fetch_keys(&issuer.config).await {
                Ok(set) => {
                    keys.set = set;
                    keys.fetched = Some(Instant::now());
                }
                Err(error) => {
                    tracing::warn!(issuer = %issuer.config.issuer, %error, "could not fetch the issuer's keys");
                }
            }
        }
        if keys.set.is_empty() {
            return Err(AuthError::Invalid(format!(
                "the keys of issuer {} could not be fetched",
                issuer.config.issuer
            )));
        }
        find(&keys.set, kid)
            .cloned()
            .ok_or_else(|| AuthError::Invalid("the token's key id is not the issuer's".to_owned()))
    }

    async fn fetch_keys(&self, issuer: &IssuerConfig) -> Result<Vec<Jwk>, String> {
        let uri = match &issuer.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.issuer.trim_end_matches('/')
                );
                let discovery: Discovery = self.fetch(&url).await?;
                // OpenID Connect Discovery 1.0, 4.3: the document is the issuer's own.
                if discovery.issuer != issuer.issuer {
                    return Err(format!(
                        "{url} names issuer {}, not {}",
                        discovery.issuer, issuer.issuer
                    ));
                }
                check_url(&discovery.jwks_uri)?;
                discovery.jwks_uri
            }
        };
        let set: JwkSet = self.fetch(&uri).await?;
        Ok(set.keys.into_iter().filter(verifies_signatures).collect())
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("GET {url}: {error}"))?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| format!("GET {url}: {error}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: over {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|error| format!("GET {url}: {error}"))
    }
}

/// Issuers are reached over HTTPS; plain HTTP only on loopback (tests, a local proxy).
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("{url}: {error}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("{url}: an issuer must be reached over https")),
    }
}

/// Only public keys meant for verifying signatures: an `oct` (shared secret) key in a
/// published set would let anyone who reads it sign, and an encryption key is not the
/// issuer's signing key.
fn verifies_signatures(jwk: &Jwk) -> bool {
    let public = !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_));
    let for_signatures = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let verifies = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    public && for_signatures && verifies
}

fn find<'a>(set: &'a [Jwk], kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(kid) => set
            .iter()
            .find(|jwk| jwk.common.key_id.as_deref() == Some(kid)),
        None if set.len() == 1 => set.first(),
        None => None,
    }
}

/// The one algorithm a key verifies: the one it declares, or its family's usual one.
/// Never a shared-secret (HS*) algorithm.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk
        .common
        .key_algorithm
        .and_then(|alg| Algorithm::try_from(alg).ok());
    let algorithm = match (&jwk.algorithm, declared) {
        (_, Some(algorithm)) => algorithm,
        (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (AlgorithmParameters::OctetKeyPair(_), None) => Algorithm::EdDSA,
        _ => return None,
    };
    let shared_secret = matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    );
    (!shared_secret).then_some(algorithm)
}

fn matches(rule: &ClaimRule, claims: &BTreeMap<String, Value>) -> bool {
    rule.claims
        .iter()
        .all(|(claim, expected)| claims.get(claim).and_then(Value::as_str) == Some(expected))
}

fn invalid(error: jsonwebtoken::errors::Error) -> AuthError {
    AuthError::Invalid(format!("the ID token is not valid: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(claims: &[(&str, &str)]) -> ClaimRule {
        ClaimRule {
            claims: claims
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            team: "payments".to_owned(),
            role: Role::Editor,
        }
    }

    #[test]
    fn a_rule_matches_only_when_every_claim_is_equal_and_a_string() {
        let claims: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
            "repository_owner": "payments", "ref": "refs/heads/main", "run_attempt": 1
        }))
        .expect("claims");
        assert!(matches(&rule(&[("repository_owner", "payments")]), &claims));
        assert!(matches(
            &rule(&[("repository_owner", "payments"), ("ref", "refs/heads/main")]),
            &claims
        ));
        assert!(!matches(&rule(&[("ref", "refs/heads/dev")]), &claims));
        assert!(!matches(&rule(&[("run_attempt", "1")]), &claims));
        assert!(!matches(&rule(&[("missing", "x")]), &claims));
    }

    #[test]
    fn issuers_are_reached_over_https_or_on_loopback() {
        assert!(check_url("https://token.actions.githubusercontent.com").is_ok());
        assert!(check_url("http://127.0.0.1:8080/issuer").is_ok());
        assert!(check_url("http://[::1]/").is_ok());
        assert!(check_url("http://issuer.example.com").is_err());
        assert!(check_url("file:///etc/passwd").is_err());
    }

    #[test]
    fn only_public_signature_keys_are_used() {
        let key = |extra: serde_json::Value| -> Jwk {
            let mut jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
            jwk.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(jwk).expect("a JWK")
        };
        assert!(verifies_signatures(&key(serde_json::json!({}))));
        assert!(verifies_signatures(&key(serde_json::json!({"use": "sig"}))));
        assert!(!verifies_signatures(&key(
            serde_json::json!({"use": "enc"})
        )));
        assert!(!verifies_signatures(&key(
            serde_json::json!({"key_ops": ["encrypt"]})
        )));
        let secret: Jwk =
            serde_json::from_value(serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}))
                .expect("a JWK");
        assert!(!verifies_signatures(&secret));
    }

    #[test]
    fn a_key_never_verifies_with_a_shared_secret_algorithm() {
        let rsa: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "n": "sXch", "e": "AQAB", "alg": "HS256"
        }))
        .expect("a JWK");
        assert_eq!(algorithm_of(&rsa), None);
        let ec: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"
        }))
        .expect("a JWK");
        assert_eq!(algorithm_of(&ec), Some(Algorithm::ES256));
    }
}
