//! An OIDC issuer on loopback with keys the test generates, and ID tokens it signs
//! (or forges): what a CI system's identity provider is to the server.

#![allow(dead_code)] // each test binary uses a different part of it

use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use serde_json::{Value, json};
use tempfile::NamedTempFile;

pub const AUDIENCE: &str = "extsvc";

// The issuer.

/// What the fake issuer serves, and how often it was asked.
pub struct IssuerState {
    url: String,
    keys: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
}

/// An OIDC issuer on a free loopback port, serving `/jwks` and
/// `/.well-known/openid-configuration`.
pub struct Issuer {
    state: web::Data<IssuerState>,
}

impl Issuer {
    pub fn start(keys: &[&Key]) -> Self {
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

    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// Adds a key to the published set (a rotation).
    pub fn publish(&self, key: &Key) {
        self.state.keys.lock().expect("the keys").push(key.jwk());
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
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
pub struct Key {
    kid: String,
    pair: KeyPair,
}

impl Key {
    pub fn new(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            pair: KeyPair::generate().expect("a P-256 key pair"),
        }
    }

    /// The public point, uncompressed: 0x04, X, Y.
    pub fn point(&self) -> &[u8] {
        self.pair.public_key_raw()
    }

    pub fn jwk(&self) -> Value {
        let point = self.point();
        json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            "kid": self.kid, "alg": "ES256", "use": "sig",
        })
    }

    /// An ES256 token with this key's id.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// An ES256 token signed with this key, naming key id `kid`.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
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
pub fn sign_hs256(kid: Option<&str>, secret: &[u8], claims: &Value) -> String {
    let header = Header {
        alg: Algorithm::HS256,
        kid: kid.map(str::to_owned),
        ..Header::default()
    };
    let key = EncodingKey::from_secret(secret).expect("an HMAC key");
    jsonwebtoken::encode(&header, claims, &key).expect("a signed token")
}

/// A token that says it needs no signature: `alg: none`, and an empty signature.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    let part = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    format!("{}.{}.", part(&header), part(claims))
}

pub fn now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds")
}

/// Claims of a CI job of the payments repository on main, valid for ten minutes.
pub fn claims(issuer: &Issuer) -> Value {
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
pub fn changed(mut claims: Value, changes: Value) -> Value {
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

/// The auth configuration trusting `issuer`: at its `jwksUri`, or through discovery.
pub fn auth_config(issuer: &Issuer, discovery: bool) -> NamedTempFile {
    config_file(&oidc_yaml(issuer, discovery))
}

/// The `oidc:` section trusting `issuer`: CI jobs of `payments` on main are editors of
/// team `payments`, and those of `ghosts` of a team that does not exist.
pub fn oidc_yaml(issuer: &Issuer, discovery: bool) -> String {
    let url = issuer.url();
    let jwks_uri = if discovery {
        String::new()
    } else {
        format!("\n  jwksUri: \"{url}/jwks\"")
    };
    format!(
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
    )
}

/// A temporary auth configuration file holding `yaml`.
pub fn config_file(yaml: &str) -> NamedTempFile {
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("a temporary file");
    std::fs::write(file.path(), yaml).expect("the auth configuration is written");
    file
}
