//! The access matrix: every operation of the served OpenAPI document, called by every
//! kind of caller, against the status each cell must answer. A route added without a
//! row here fails the test. It runs beside the test control plane, whose API server
//! reviews the service account's token.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Site, TestOperator, control_plane, registration};
use crate::issuer::{
    Issuer, Key, changed, claims, config_file, now, oidc_yaml, sign_hs256, unsigned,
};
use crate::service_accounts::account_token;
use crate::settings::ADMIN_TOKEN;

/// The callers, in the order of a row's statuses.
const CALLERS: [&str; 18] = [
    "no token",
    "malformed header",
    "expired token",
    "revoked token",
    "unknown token",
    "viewer of payments",
    "editor of billing",
    "editor of payments",
    "admin of payments",
    "platform admin",
    "OIDC editor of payments",
    "OIDC, wrong issuer",
    "OIDC, wrong audience",
    "OIDC, expired",
    "OIDC, bad signature",
    "OIDC, alg none",
    "OIDC, HS256 signed with the public key",
    "service account mapped to editor of payments",
];

/// Every operation: method, path as the document writes it, and what each caller gets.
/// The authenticated callers' statuses are written out; the OIDC editor and the service
/// account get what the editor with an API token gets, and every caller without valid
/// credentials 401.
fn rows() -> Vec<(&'static str, &'static str, [u16; 18])> {
    let row = |members: [u16; 5]| -> [u16; 18] {
        let mut all = [401; 18];
        all[5..10].copy_from_slice(&members);
        all[10] = members[2];
        all[17] = members[2];
        all
    };
    let services = "/api/v1/namespaces/{namespace}/external-services";
    let service = "/api/v1/namespaces/{namespace}/external-services/{name}";
    vec![
        ("post", services, row([403, 403, 201, 201, 201])),
        ("get", services, row([200, 403, 200, 200, 200])),
        ("get", service, row([200, 404, 200, 200, 200])),
        ("put", service, row([403, 403, 200, 200, 200])),
        ("delete", service, row([403, 404, 200, 200, 200])),
        ("get", "/api/v1/external-services", row([200; 5])),
        (
            "get",
            "/api/v1/namespaces/{namespace}/external-services/{name}/health",
            row([200, 404, 200, 200, 200]),
        ),
        (
            "get",
            "/api/v1/namespaces/{namespace}/external-services/{name}/health/history",
            row([200, 404, 200, 200, 200]),
        ),
        ("get", "/api/v1/health", row([200; 5])),
        (
            "get",
            "/api/v1/namespaces/{namespace}/external-services/{name}/events",
            row([200, 404, 200, 200, 200]),
        ),
        (
            "get",
            "/api/v1/namespaces/{namespace}/events",
            row([200, 403, 200, 200, 200]),
        ),
        (
            "get",
            "/api/v1/namespaces/{namespace}/external-services/{name}/maintenance",
            row([200, 404, 200, 200, 200]),
        ),
        (
            "post",
            "/api/v1/namespaces/{namespace}/external-services/{name}/maintenance",
            row([403, 404, 200, 200, 200]),
        ),
        (
            "delete",
            "/api/v1/namespaces/{namespace}/external-services/{name}/maintenance",
            row([403, 404, 200, 200, 200]),
        ),
        ("post", "/api/v1/teams", row([403, 403, 403, 403, 201])),
        ("get", "/api/v1/teams", row([200; 5])),
        (
            "get",
            "/api/v1/teams/{team}",
            row([200, 404, 200, 200, 200]),
        ),
        (
            "put",
            "/api/v1/teams/{team}",
            row([403, 403, 403, 403, 200]),
        ),
        (
            "delete",
            "/api/v1/teams/{team}",
            row([403, 403, 403, 403, 200]),
        ),
        (
            "post",
            "/api/v1/teams/{team}/tokens",
            row([403, 404, 403, 201, 201]),
        ),
        (
            "get",
            "/api/v1/teams/{team}/tokens",
            row([403, 404, 403, 200, 200]),
        ),
        (
            "delete",
            "/api/v1/teams/{team}/tokens/{id}",
            row([403, 404, 403, 200, 200]),
        ),
        ("get", "/api/v1/audit", row([403, 403, 403, 403, 200])),
        ("get", "/metrics", row([403, 403, 403, 403, 200])),
        ("get", "/healthz", [200; 18]),
        ("get", "/readyz", [200; 18]),
    ]
}

/// Two teams, a service, a token of each kind, an OIDC issuer whose CI jobs on
/// `payments`' main branch are editors of `payments`, and a service account that is one
/// too. Team `payments` owns the operator's watched namespace, `billing` another one.
struct World {
    op: TestOperator,
    database_url: String,
    billing: String,
    tokens: Vec<Option<String>>,
    others: Vec<String>,
    made: u32,
    _issuer: Issuer,
    _config: tempfile::NamedTempFile,
}

impl World {
    async fn new() -> Self {
        let cp = control_plane().await;
        let site = Site::on(cp).await;
        let billing = cp.fresh_namespace().await;
        // No team may own the operator's own namespace: its Lease lives elsewhere.
        let lease_namespace = cp.fresh_namespace().await;
        let key = Key::new("a");
        let issuer = Issuer::start(&[&key]);
        let accounts = format!(
            "serviceAccounts:\n- {{namespace: {ns}, name: deployer, team: payments, role: editor}}\n",
            ns = site.namespace
        );
        let config = config_file(&format!("{}{accounts}", oidc_yaml(&issuer, false)));
        let path = config.path().to_owned();
        let op = site
            .start_with("only", |settings| {
                settings.auth_config = Some(path);
                settings.kubernetes.lease_namespace = lease_namespace;
            })
            .await;
        let valid = claims(&issuer);
        let now = now();
        let mut others = vec![
            key.sign(&valid),
            key.sign(&changed(
                valid.clone(),
                json!({"iss": "http://127.0.0.1:1/other"}),
            )),
            key.sign(&changed(valid.clone(), json!({"aud": "another-service"}))),
            key.sign(&changed(
                valid.clone(),
                json!({"iat": now - 1200, "nbf": now - 1200, "exp": now - 600}),
            )),
            Key::new("a").sign(&valid),
            unsigned("a", &valid),
            sign_hs256(Some("a"), key.point(), &valid),
        ];
        others.push(account_token(&op.kube, &site.namespace, "deployer").await);
        let mut world = Self {
            op,
            database_url: site.database_url.clone(),
            billing,
            tokens: Vec::new(),
            others,
            made: 0,
            _issuer: issuer,
            _config: config,
        };
        world.restore().await;
        world
    }

    /// Puts back what a successful delete took away: the team `payments` (and, when it
    /// had gone, every token), and the service `db`.
    async fn restore(&mut self) {
        let address = &self.op.address;
        let team = self
            .op
            .http
            .get(format!("{address}/api/v1/teams/payments"))
            .send()
            .await
            .unwrap();
        if team.status() == StatusCode::NOT_FOUND || self.tokens.is_empty() {
            let payments = self.op.namespace.clone();
            for (team, namespace) in [("payments", &payments), ("billing", &self.billing)] {
                let body = json!({"namespaces": [namespace], "ingressHosts": ["pay.example.com"]});
                let url = format!("{address}/api/v1/teams/{team}");
                let put = self.op.http.put(url).json(&body).send().await.unwrap();
                assert!(
                    put.status().is_success(),
                    "PUT team {team}: {}",
                    put.status()
                );
            }
            let expired = self.token("payments", &["read"]).await;
            expire(&self.database_url, &expired.1).await;
            let revoked = self.token("payments", &["read"]).await;
            let url = format!("{address}/api/v1/teams/payments/tokens/{}", revoked.1);
            assert_eq!(self.op.http.delete(url).send().await.unwrap().status(), 200);
            self.tokens = vec![
                None,
                Some("malformed".to_owned()),
                Some(expired.0),
                Some(revoked.0),
                Some("extsvc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
                Some(self.token("payments", &["read"]).await.0),
                Some(self.token("billing", &["read", "write"]).await.0),
                Some(self.token("payments", &["write"]).await.0),
                Some(self.token("payments", &["admin"]).await.0),
                Some(ADMIN_TOKEN.to_owned()),
            ];
            self.tokens.extend(self.others.iter().cloned().map(Some));
        }
        assert!(
            self.op.put("db", &registration("db")).await.is_success(),
            "PUT db"
        );
    }

    /// A new token of `team` (secret, id), made by the platform admin.
    async fn token(&self, team: &str, scopes: &[&str]) -> (String, String) {
        let url = format!("{}/api/v1/teams/{team}/tokens", self.op.address);
        let body = json!({"name": "matrix", "scopes": scopes});
        let made = self.op.http.post(url).json(&body).send().await.unwrap();
        assert_eq!(made.status(), StatusCode::CREATED);
        let made: Value = made.json().await.unwrap();
        (
            made["token"].as_str().unwrap().to_owned(),
            made["id"].as_str().unwrap().to_owned(),
        )
    }

    /// The request a caller sends to one cell, with a body where the operation takes one.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        caller: usize,
    ) -> reqwest::RequestBuilder {
        self.made += 1;
        let id = if path.contains("{id}") {
            self.token("payments", &["read"]).await.1
        } else {
            String::new()
        };
        let url = format!(
            "{}{}",
            self.op.address,
            path.replace("{namespace}", &self.op.namespace)
                .replace("{name}", "db")
                .replace("{team}", "payments")
                .replace("{id}", &id)
        );
        let http = reqwest::Client::new();
        let mut request = http.request(
            Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
            url,
        );
        request = match (caller, &self.tokens[caller]) {
            (1, _) => request.header("Authorization", "Basic bWFsZm9ybWVkOg=="),
            (_, Some(token)) => request.bearer_auth(token),
            (_, None) => request,
        };
        let body = match (method, path) {
            ("post", "/api/v1/namespaces/{namespace}/external-services") => {
                Some(registration(&format!("made-{}", self.made)))
            }
            ("put", "/api/v1/namespaces/{namespace}/external-services/{name}") => {
                Some(registration("db"))
            }
            ("post", "/api/v1/teams") => {
                Some(json!({"name": format!("made-{}", self.made), "namespaces": []}))
            }
            ("put", "/api/v1/teams/{team}") => Some(
                json!({"namespaces": [self.op.namespace], "ingressHosts": ["pay.example.com"]}),
            ),
            ("post", "/api/v1/namespaces/{namespace}/external-services/{name}/maintenance") => {
                let until = chrono::Utc::now() + chrono::Duration::hours(1);
                Some(
                    json!({"addresses": ["192.0.2.10"], "reason": "matrix", "until": until.to_rfc3339()}),
                )
            }
            ("post", "/api/v1/teams/{team}/tokens") => {
                Some(json!({"name": "ci", "scopes": ["read"], "expiresInSeconds": 3600}))
            }
            _ => None,
        };
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
    }
}

/// Makes a token expired an hour ago, behind the API's back.
async fn expire(database_url: &str, id: &str) {
    let mut db = sqlx::PgConnection::connect(database_url).await.unwrap();
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 hour' WHERE id = $1::uuid")
        .bind(id)
        .execute(&mut db)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_operation_answers_every_caller_as_the_matrix_says() {
    let mut world = World::new().await;
    let doc: Value = world.op.get_json("/openapi.json").await;
    let mut served: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            served.push((method.clone(), path.clone()));
        }
    }
    let rows = rows();
    let mut listed: Vec<(String, String)> = rows
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    served.sort();
    listed.sort();
    assert_eq!(
        served, listed,
        "every operation of the document has a row, and only those"
    );

    let mut wrong = Vec::new();
    for (method, path, expected) in rows {
        let secured = doc["paths"][path][method]["security"].is_array();
        assert_eq!(
            secured,
            expected[0] == 401,
            "{method} {path}: security in the document"
        );
        for (caller, expected) in expected.into_iter().enumerate() {
            let response = world
                .request(method, path, caller)
                .await
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if status == 401 {
                let challenge = response.headers().get("www-authenticate");
                assert_eq!(
                    challenge.and_then(|v| v.to_str().ok()),
                    Some("Bearer realm=\"extsvc\"")
                );
            }
            if status != expected {
                let body = response.text().await.unwrap_or_default();
                wrong.push(format!(
                    "{} {path} as {}: {status}, expected {expected}: {body}",
                    method.to_uppercase(),
                    CALLERS[caller]
                ));
            }
            if method == "delete" && (200..300).contains(&status) {
                world.restore().await;
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
