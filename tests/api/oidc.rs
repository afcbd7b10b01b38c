//! OIDC ID tokens. A fake issuer on loopback publishes its keys (at a configured
//! `jwksUri`, or through discovery); a token it signs acts as the team and role a rule
//! names, and a forged, expired, misdirected or unmatched one is refused with 401. Keys
//! are cached, and a key id not seen yet makes the server fetch them again.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tempfile::NamedTempFile;

use crate::helpers::{TestApp, document, problem, spawn_app_with};
use crate::issuer::{Issuer, Key, auth_config, changed, claims, now, sign_hs256, unsigned};

// The server under test.

/// The server trusting one issuer (key `a`), and team `payments` owning namespace
/// `payments`.
struct Setup {
    app: TestApp,
    issuer: Issuer,
    key: Key,
    _config: NamedTempFile,
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
