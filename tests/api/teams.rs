//! Teams, their tokens, their limits, the audit log and the rate limit.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{TestApp, document, pointers, problem, spawn_app, spawn_app_with};
use crate::settings::client_with;

async fn put_team(app: &TestApp, team: &str, body: Value) -> reqwest::Response {
    let url = format!("{}/api/v1/teams/{team}", app.address);
    app.client.put(url).json(&body).send().await.unwrap()
}

/// A new token of `team` with `scopes`: the whole answer.
async fn token(app: &TestApp, team: &str, scopes: &[&str]) -> Value {
    let url = format!("{}/api/v1/teams/{team}/tokens", app.address);
    let body = json!({"name": "ci", "scopes": scopes, "expiresInSeconds": 3600});
    let made = app.client.post(url).json(&body).send().await.unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    made.json().await.unwrap()
}

/// The team `payments`, owning its namespace, with the host of [`document`]'s Ingress.
fn payments() -> Value {
    json!({"namespaces": ["payments"], "ingressHosts": ["pay.example.com"]})
}

fn secret(token: &Value) -> String {
    token["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_token_is_shown_once_kept_as_a_hash_and_refused_soon_after_revocation() {
    let app = spawn_app().await;
    let made = put_team(&app, "payments", payments()).await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let made = token(&app, "payments", &["read", "write"]).await;
    let secret = secret(&made);
    assert!(
        secret.starts_with("extsvc_") && secret.len() >= 7 + 43,
        "{secret}"
    );
    assert_eq!(made["role"], "editor");
    assert_eq!(made["scopes"], json!(["read", "write"]));

    let listed: Value = app
        .get(&format!("{}/api/v1/teams/payments/tokens", app.address))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], made["id"]);
    assert!(listed["items"][0].get("token").is_none());
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT row_to_json(t)::text FROM api_tokens t")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(
        !stored.contains(&secret["extsvc_".len()..]),
        "the secret is stored: {stored}"
    );

    let caller = client_with(&secret);
    let url = format!(
        "{}/api/v1/namespaces/payments/external-services",
        app.address
    );
    assert_eq!(
        caller
            .post(&url)
            .json(&document("db"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let used: Value = app
        .get(&format!("{}/api/v1/teams/payments/tokens", app.address))
        .await
        .json()
        .await
        .unwrap();
    assert!(used["items"][0]["lastUsedAt"].is_string());

    let revoke = format!(
        "{}/api/v1/teams/payments/tokens/{}",
        app.address,
        made["id"].as_str().unwrap()
    );
    let revoked = app.client.delete(revoke).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    // Replicas trust what they learnt for half a second; the deadline only bounds a
    // broken build, the guarantee is the trust period.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = caller.get(&url).send().await.unwrap().status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status} after revocation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn teams_own_namespaces_alone_and_never_the_clusters_own() {
    let app = spawn_app().await;
    assert_eq!(
        put_team(&app, "payments", json!({"namespaces": ["payments"]}))
            .await
            .status(),
        201
    );
    let taken = put_team(
        &app,
        "billing",
        json!({"namespaces": ["billing", "payments"]}),
    )
    .await;
    let body = problem(taken, StatusCode::CONFLICT).await;
    assert!(
        body["detail"].as_str().unwrap().contains("payments"),
        "{body}"
    );
    let teams: Value = app
        .get(&format!("{}/api/v1/teams", app.address))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        teams["items"].as_array().unwrap().len(),
        1,
        "nothing of billing was written"
    );

    let reserved = put_team(
        &app,
        "platform",
        json!({"namespaces": ["ok", "kube-system", "Bad"], "ingressHosts": ["*"], "maxServices": -1}),
    )
    .await;
    let body = problem(reserved, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        pointers(&body),
        [
            "/namespaces/1",
            "/namespaces/2",
            "/maxServices",
            "/ingressHosts/0"
        ]
    );
    let named = put_team(&app, "x", json!({"name": "y", "namespaces": []})).await;
    assert_eq!(
        pointers(&problem(named, StatusCode::UNPROCESSABLE_ENTITY).await),
        ["/name"]
    );
}

#[tokio::test]
async fn a_team_may_claim_only_its_hosts_and_hold_only_its_quota() {
    let app = spawn_app().await;
    let team = json!({"namespaces": ["payments"], "maxServices": 1, "ingressHosts": ["*.payments.example.com"]});
    assert_eq!(put_team(&app, "payments", team).await.status(), 201);
    let editor = client_with(&secret(&token(&app, "payments", &["write"]).await));
    let url = format!(
        "{}/api/v1/namespaces/payments/external-services",
        app.address
    );

    let mut doc = document("db");
    doc["spec"]["ingress"]["rules"][0]["host"] = json!("login.example.com");
    doc["spec"]["ingress"]["tls"] =
        json!([{"hosts": ["api.payments.example.com", "a.b.payments.example.com"]}]);
    let refused = editor.post(&url).json(&doc).send().await.unwrap();
    assert_eq!(
        pointers(&problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await),
        ["/spec/ingress/rules/0/host", "/spec/ingress/tls/0/hosts/1"]
    );

    doc["spec"]["ingress"]["rules"][0]["host"] = json!("api.payments.example.com");
    doc["spec"]["ingress"]["tls"] = json!([]);
    assert_eq!(
        editor.post(&url).json(&doc).send().await.unwrap().status(),
        201
    );
    doc["metadata"]["name"] = json!("second");
    let full = editor.post(&url).json(&doc).send().await.unwrap();
    let body = problem(full, StatusCode::FORBIDDEN).await;
    assert_eq!(body["type"], "https://extsvc.dev/problems/quota-exceeded");
}

#[tokio::test]
async fn a_team_member_lists_only_its_own_namespaces() {
    let app = spawn_app().await;
    let team = json!({"namespaces": ["payments", "payments-staging"], "ingressHosts": ["pay.example.com"]});
    put_team(&app, "payments", team).await;
    for namespace in ["payments", "payments-staging", "billing"] {
        app.register(namespace, "db").await;
    }
    let viewer = client_with(&secret(&token(&app, "payments", &["read"]).await));
    let mut seen = Vec::new();
    let mut url = format!("{}/api/v1/external-services?limit=1", app.address);
    loop {
        let page: Value = viewer.get(&url).send().await.unwrap().json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["metadata"]["namespace"].as_str().unwrap().to_owned());
        }
        match page["metadata"]["continue"].as_str() {
            Some(next) => {
                url = format!(
                    "{}/api/v1/external-services?limit=1&continue={next}",
                    app.address
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, ["payments", "payments-staging"]);
    let health: Value = viewer
        .get(format!("{}/api/v1/health", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["namespace"] != "billing"),
        "{health}"
    );
}

#[tokio::test]
async fn writes_and_refusals_are_audited_with_their_request_id() {
    let app = spawn_app().await;
    put_team(&app, "payments", payments()).await;
    let made = token(&app, "payments", &["read"]).await;
    let viewer = client_with(&secret(&made));

    let created = app
        .client
        .post(app.collection("payments"))
        .header("X-Request-Id", "deploy-42")
        .json(&document("db"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["x-request-id"], "deploy-42");
    let refused = viewer
        .delete(app.item("payments", "db"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let generated = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let read = viewer.get(app.item("payments", "db")).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    let audit: Value = app
        .get(&format!("{}/api/v1/audit?namespace=payments", app.address))
        .await
        .json()
        .await
        .unwrap();
    let items = audit["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        2,
        "a write and a refusal, not the read: {audit}"
    );
    let (refusal, write) = (&items[0], &items[1]);
    assert_eq!(write["requestId"], "deploy-42");
    assert_eq!(write["actor"], "platform-admin");
    assert_eq!(
        (&write["method"], &write["status"], &write["outcome"]),
        (&json!("POST"), &json!(201), &json!("ok"))
    );
    assert_eq!(write["generationAfter"], 1);
    assert_eq!(refusal["requestId"], generated.as_str());
    assert_eq!(
        refusal["actor"],
        format!("token:{}", made["id"].as_str().unwrap())
    );
    assert_eq!(
        (&refusal["team"], &refusal["status"], &refusal["outcome"]),
        (&json!("payments"), &json!(403), &json!("forbidden"))
    );

    let anonymous = reqwest::Client::new()
        .get(app.item("payments", "db"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let audit: Value = app
        .get(&format!("{}/api/v1/audit?limit=1", app.address))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&audit["items"][0]["actor"], &audit["items"][0]["status"]),
        (&json!("anonymous"), &json!(401))
    );
    assert!(audit["continue"].is_string());

    // A team's admin reads its own team's entries only.
    let admin = client_with(&secret(&token(&app, "payments", &["admin"]).await));
    let own = admin
        .get(format!("{}/api/v1/audit?team=payments", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    let all = admin
        .get(format!("{}/api/v1/audit", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_caller_past_its_rate_is_told_when_to_come_back() {
    let app = spawn_app_with(|settings| settings.rate_limit = 1).await;
    // A burst of two, then one a second.
    for _ in 0..2 {
        let response = app
            .get(&format!("{}/api/v1/external-services", app.address))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("ratelimit-remaining"));
    }
    let limited = app
        .get(&format!("{}/api/v1/external-services", app.address))
        .await;
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(limited.headers()["ratelimit-limit"], "2");
    assert_eq!(limited.headers()["ratelimit-remaining"], "0");
    problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    // Another caller is not affected.
    let other = reqwest::Client::new().get(format!("{}/api/v1/external-services", app.address));
    assert_eq!(
        other.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_platform_admin_may_open_a_denied_range_to_one_team() {
    let app =
        spawn_app_with(|settings| settings.denied_cidrs = Some("192.0.2.0/24".to_owned())).await;
    let mut payments = payments();
    payments["allowedCidrs"] = json!(["192.0.2.0/28"]);
    assert_eq!(put_team(&app, "payments", payments).await.status(), 201);
    let billing = json!({"namespaces": ["billing"], "ingressHosts": ["pay.example.com"]});
    assert_eq!(put_team(&app, "billing", billing).await.status(), 201);

    // document() has 192.0.2.10 first: inside the exception for payments only.
    assert_eq!(app.post("payments", &document("db")).await.status(), 201);
    let refused = problem(
        app.post("billing", &document("db")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(pointers(&refused), ["/spec/endpoints/0/address"]);
    let mut outside = document("outside");
    outside["spec"]["endpoints"][0]["address"] = json!("192.0.2.100");
    let refused = problem(
        app.post("payments", &outside).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(pointers(&refused), ["/spec/endpoints/0/address"]);

    let bad = put_team(
        &app,
        "x",
        json!({"namespaces": [], "allowedCidrs": ["10.0.0.0/8", "nope", "10.0.0.0/8,10.1.0.0/16"]}),
    )
    .await;
    assert_eq!(
        pointers(&problem(bad, StatusCode::UNPROCESSABLE_ENTITY).await),
        ["/allowedCidrs/1", "/allowedCidrs/2"]
    );
}
