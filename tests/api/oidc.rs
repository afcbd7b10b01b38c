//! OIDC ID tokens. A fake issuer on loopback publishes its keys (at a configured
//! `jwksUri`, or through discovery); a token it signs acts as the team and role a rule
//! names, and a forged, expired, misdirected or unmatched one is refused with 401. Keys
//! are cached, and a key id not seen yet makes the server fetch them again.

use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tempfile::NamedTempFile;

use crate::helpers::{TestApp, document, problem, spawn_app_with};

const AUDIENCE: &str = "extsvc";

// The issuer.

/// What the fake issuer serves, and how often it was asked.
pub(crate) struct IssuerState {
    url: String,
    keys: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
}

/// An OIDC issuer on a free loopback port, serving `/jwks` and
/// `/.well-known/openid-configuration`.
pub(crate) struct Issuer {
    state: web::Data<IssuerState>,
}

impl Issuer {
    pub(crate) fn start(keys: &[&Key]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let state = web::Data::new(IssuerState {
            url,
            keys: Mutex::new(keys.iter().map(|key| key.jwk()).collect()),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
        });
        let served = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(served.clone())
                .route("/jwks", web::get().to(serve_jwks))
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(serve_discovery),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("the issuer listens")
        .run();
        tokio::spawn(server);
        Self { state }
    }

    fn url(&self) -> &str {
        &self.state.url
    }

    /// Adds a key to the published set (a rotation).
    fn publish(&self, key: &Key) {
        self.state.keys.lock().expect("the keys").push(key.jwk());
    }

    fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }
}

async fn serve_jwks(state: web::Data<IssuerState>) -> HttpResponse {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = state.keys.lock().expect("the keys").clone();
    HttpResponse::Ok().json(json!({ "keys": keys }))
}

async fn serve_discovery(state: web::Data<IssuerState>) -> HttpResponse {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().json(json!({
        "issuer": state.url,
        "jwks_uri": format!("{}/jwks", state.url),
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

// Keys and tokens.

/// An ECDSA P-256 key pair and its key id.
pub(crate) struct Key {
    kid: String,
    pair: KeyPair,
}

impl Key {
    pub(crate) fn new(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            pair: KeyPair::generate().expect("a P-256 key pair"),
        }
    }

    /// The public point, uncompressed: 0x04, X, Y.
    pub(crate) fn point(&self) -> &[u8] {
        self.pair.public_key_raw()
    }

    fn jwk(&self) -> Value {
        let point = self.point();
        json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            "kid": self.kid, "alg": "ES256", "use": "sig",
        })
    }

    /// An ES256 token with this key's id.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// An ES256 token signed with this key, naming key id `kid`.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let header = Header {
            alg: Algorithm::ES256,
            kid: Some(kid.to_owned()),
            ..Header::default()
        };
        let key = EncodingKey::from_ec_der(&self.pair.serialize_der());
        jsonwebtoken::encode(&header, claims, &key).expect("a signed token")
    }
}

/// An HS256 token with `secret` as the shared key.
pub(crate) fn sign_hs256(kid: Option<&str>, secret: &[u8], claims: &Value) -> String {
    let header = Header {
        alg: Algorithm::HS256,
        kid: kid.map(str::to_owned),
        ..Header::default()
    };
    let key = EncodingKey::from_secret(secret).expect("an HMAC key");
    jsonwebtoken::encode(&header, claims, &key).expect("a signed token")
}

/// A token that says it needs no signature: `alg: none`, and an empty signature.
pub(crate) fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    let part = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    format!("{}.{}.", part(&header), part(claims))
}

pub(crate) fn now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds")
}

/// Claims of a CI job of the payments repository on main, valid for ten minutes.
pub(crate) fn claims(issuer: &Issuer) -> Value {
    let now = now();
    json!({
        "iss": issuer.url(),
        "aud": AUDIENCE,
        "sub": "repo:payments/api:ref:refs/heads/main",
        "iat": now,
        "nbf": now - 60,
        "exp": now + 600,
        "repository_owner": "payments",
        "ref": "refs/heads/main",
    })
}

/// `claims` with `changes` applied; a null removes a claim.
pub(crate) fn changed(mut claims: Value, changes: Value) -> Value {
    let object = claims.as_object_mut().expect("an object");
    for (name, value) in changes.as_object().expect("an object") {
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.clone(), value.clone());
        }
    }
    claims
}

// The server under test.

/// The server trusting one issuer (key `a`), and team `payments` owning namespace
/// `payments`.
struct Setup {
    app: TestApp,
    issuer: Issuer,
    key: Key,
    _config: NamedTempFile,
}

/// The auth configuration trusting `issuer`: at its `jwksUri`, or through discovery.
pub(crate) fn auth_config(issuer: &Issuer, discovery: bool) -> NamedTempFile {
    let url = issuer.url();
    let jwks_uri = if discovery {
        String::new()
    } else {
        format!("\n  jwksUri: \"{url}/jwks\"")
    };
    let yaml = format!(
        "oidc:
- issuer: \"{url}\"
  audience: {AUDIENCE}{jwks_uri}
  rules:
  - claims: {{repository_owner: payments, ref: refs/heads/main}}
    team: payments
    role: editor
  - claims: {{repository_owner: ghosts}}
    team: ghosts
    role: editor
"
    );
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("a temporary file");
    std::fs::write(file.path(), yaml).expect("the auth configuration is written");
    file
}

async fn setup(discovery: bool) -> Setup {
    let key = Key::new("a");
    let issuer = Issuer::start(&[&key]);
    let config = auth_config(&issuer, discovery);
    let path = config.path().to_owned();
    let app = spawn_app_with(|settings| settings.auth_config = Some(path)).await;
    let team = app
        .client
        .post(format!("{}/api/v1/teams", app.address))
        .json(&json!({"name": "payments", "namespaces": ["payments"], "ingressHosts": ["pay.example.com"]}))
        .send()
        .await
        .expect("POST answers");
    assert_eq!(team.status(), StatusCode::CREATED);
    Setup {
        app,
        issuer,
        key,
        _config: config,
    }
}

/// A client without credentials of its own, that gives up on a server that hangs.
fn caller() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Registers `document(name)` in `namespace` as the bearer of `token`.
async fn register_as(app: &TestApp, token: &str, namespace: &str, name: &str) -> Response {
    caller()
        .post(app.collection(namespace))
        .bearer_auth(token)
        .json(&document(name))
        .send()
        .await
        .expect("POST answers")
}

async fn get_as(url: &str, token: &str) -> Response {
    caller()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET answers")
}

/// Checks a 401 with its challenge and problem document; `case` names the failure.
async fn assert_unauthenticated(response: Response, case: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok());
    assert_eq!(challenge, Some("Bearer realm=\"extsvc\""), "{case}");
    problem(response, StatusCode::UNAUTHORIZED).await;
}

// The tests.

#[tokio::test]
async fn a_valid_token_acts_as_its_rules_team_and_role() {
    let Setup {
        app, issuer, key, ..
    } = setup(false).await;
    let token = key.sign(&claims(&issuer));

    let created = register_as(&app, &token, "payments", "checkout").await;
    assert_eq!(created.status(), StatusCode::CREATED);

    let elsewhere = register_as(&app, &token, "billing", "checkout").await;
    problem(elsewhere, StatusCode::FORBIDDEN).await;

    // An editor, not an admin: the team's tokens are not its to see.
    let tokens = get_as(
        &format!("{}/api/v1/teams/payments/tokens", app.address),
        &token,
    )
    .await;
    problem(tokens, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn forged_misdirected_expired_and_unmatched_tokens_are_refused() {
    let Setup {
        app, issuer, key, ..
    } = setup(false).await;
    let url = app.collection("payments");
    let valid = claims(&issuer);
    let now = now();
    // The control: the same setup accepts a good token.
    assert_eq!(
        get_as(&url, &key.sign(&valid)).await.status(),
        StatusCode::OK
    );

    let impostor = Key::new("a");
    let point = key.point();
    let jwk_x = key.jwk()["x"].as_str().expect("x").to_owned();
    let with_signature_removed = {
        let token = key.sign(&valid);
        let (signed, _) = token.rsplit_once('.').expect("three parts");
        format!("{signed}.")
    };
    // The key's own token, with some claims changed (a null removes one).
    let with = |changes: Value| key.sign(&changed(valid.clone(), changes));
    let cases: Vec<(&str, String)> = vec![
        (
            "an issuer not configured",
            with(json!({"iss": "http://127.0.0.1:1"})),
        ),
        (
            "the issuer with a trailing slash (iss is compared exactly)",
            with(json!({"iss": format!("{}/", issuer.url())})),
        ),
        ("another audience", with(json!({"aud": "another-service"}))),
        ("no audience", with(json!({"aud": null}))),
        (
            "expired ten minutes ago",
            with(json!({"iat": now - 1200, "nbf": now - 1200, "exp": now - 600})),
        ),
        (
            "valid only in ten minutes",
            with(json!({"nbf": now + 600, "exp": now + 1200})),
        ),
        ("no expiry", with(json!({"exp": null}))),
        ("no subject", with(json!({"sub": null}))),
        (
            "signed by another key with the same kid",
            impostor.sign(&valid),
        ),
        ("the signature removed", with_signature_removed),
        ("alg none", unsigned("a", &valid)),
        (
            "HS256 with the public point as the secret",
            sign_hs256(Some("a"), point, &valid),
        ),
        (
            "HS256 with the public point as the secret, no kid",
            sign_hs256(None, point, &valid),
        ),
        (
            "HS256 with the JWK's x as the secret",
            sign_hs256(Some("a"), jwk_x.as_bytes(), &valid),
        ),
        (
            "a key id the issuer does not publish",
            key.sign_as("unpublished", &valid),
        ),
        (
            "no rule matches (ref refs/heads/dev)",
            with(json!({"ref": "refs/heads/dev"})),
        ),
        (
            "a rule matches but its team does not exist",
            with(json!({"repository_owner": "ghosts"})),
        ),
    ];
    for (case, token) in cases {
        assert_unauthenticated(get_as(&url, &token).await, case).await;
        let write = register_as(&app, &token, "payments", "forged").await;
        assert_unauthenticated(write, case).await;
    }
}

#[tokio::test]
async fn a_new_key_of_the_issuer_is_used_without_a_restart() {
    let Setup {
        app, issuer, key, ..
    } = setup(false).await;
    let url = app.collection("payments");
    let token_a = key.sign(&claims(&issuer));
    assert_eq!(get_as(&url, &token_a).await.status(), StatusCode::OK);

    let key_b = Key::new("b");
    issuer.publish(&key_b);
    let token_b = key_b.sign(&claims(&issuer));
    // Keys are fetched again for an unknown key id, at most once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get_as(&url, &token_b).await.status();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "key b's token");
        assert!(
            Instant::now() < deadline,
            "a token of the new key b was still refused after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let created = register_as(&app, &token_b, "payments", "rotated").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        get_as(&url, &token_a).await.status(),
        StatusCode::OK,
        "key a still"
    );
}

#[tokio::test]
async fn an_issuer_without_jwks_uri_is_found_through_discovery() {
    let Setup {
        app, issuer, key, ..
    } = setup(true).await;
    let token = key.sign(&claims(&issuer));

    let created = register_as(&app, &token, "payments", "discovered").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let elsewhere = register_as(&app, &token, "billing", "discovered").await;
    problem(elsewhere, StatusCode::FORBIDDEN).await;
    assert_eq!(issuer.discovery_fetches(), 1);
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn keys_are_fetched_once_and_again_at_most_once_a_second_for_unknown_key_ids() {
    let Setup {
        app, issuer, key, ..
    } = setup(false).await;
    let url = app.collection("payments");
    let token = key.sign(&claims(&issuer));
    for _ in 0..11 {
        assert_eq!(get_as(&url, &token).await.status(), StatusCode::OK);
    }
    assert_eq!(
        issuer.jwks_fetches(),
        1,
        "eleven requests with a known key id fetch the keys once"
    );

    // A burst of unknown key ids may not make the server hammer the issuer.
    let started = Instant::now();
    for i in 0..30 {
        let forged = key.sign_as(&format!("unknown-{i}"), &claims(&issuer));
        assert_unauthenticated(get_as(&url, &forged).await, "an unknown key id").await;
    }
    let seconds = started.elapsed().as_secs();
    let refetches = issuer.jwks_fetches() - 1;
    assert!(
        refetches <= usize::try_from(seconds).expect("seconds") + 1,
        "{refetches} fetches of the keys in {:?} for unknown key ids",
        started.elapsed()
    );
}
