//! A pipeline running in the cluster calls with its service account's token, which the
//! API server reviews (TokenReview); a rule maps the account to a team.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Site, control_plane, registration};
use crate::settings::client_with;

/// A token of service account `name` in `namespace`, from the API server (TokenRequest).
pub async fn account_token(kube: &kube::Client, namespace: &str, name: &str) -> String {
    let accounts = Api::<ServiceAccount>::namespaced(kube.clone(), namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create the service account");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("a token for the service account")
        .status
        .expect("a token status")
        .token
}

#[tokio::test]
async fn a_mapped_service_account_acts_for_its_team_and_no_other_account_does() {
    let cp = control_plane().await;
    let site = Site::on(cp).await;
    // The team owns the watched namespace, so the operator's Lease lives elsewhere (no
    // team may own the operator's own namespace).
    let lease_namespace = cp.fresh_namespace().await;
    let config = tempfile::NamedTempFile::new().expect("a file");
    let rules = format!(
        "serviceAccounts:\n- {{namespace: {ns}, name: deployer, team: payments, role: editor}}\n",
        ns = site.namespace
    );
    std::fs::write(config.path(), rules).expect("write the auth config");
    let op = site
        .start_with("only", |settings| {
            settings.auth_config = Some(config.path().to_owned());
            settings.kubernetes.lease_namespace = lease_namespace.clone();
        })
        .await;
    let team = json!({"name": "payments", "namespaces": [site.namespace], "ingressHosts": ["pay.example.com"]});
    let made = op
        .http
        .post(format!("{}/api/v1/teams", op.address))
        .json(&team)
        .send()
        .await
        .expect("POST answers");
    assert_eq!(made.status(), StatusCode::CREATED);

    let deployer = client_with(&account_token(&op.kube, &site.namespace, "deployer").await);
    let stranger = client_with(&account_token(&op.kube, &site.namespace, "stranger").await);
    let put = |client: reqwest::Client, name: &'static str| {
        let url = op.item(name);
        async move {
            client
                .put(url)
                .json(&registration(name))
                .send()
                .await
                .expect("PUT answers")
                .status()
        }
    };
    assert_eq!(put(deployer.clone(), "db").await, StatusCode::CREATED);
    assert_eq!(put(stranger, "cache").await, StatusCode::UNAUTHORIZED);
    let forged = client_with("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl");
    assert_eq!(put(forged, "queue").await, StatusCode::UNAUTHORIZED);

    let audit: Value = op
        .http
        .get(format!("{}/api/v1/audit?limit=3", op.address))
        .send()
        .await
        .expect("GET answers")
        .json()
        .await
        .expect("JSON");
    let write = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|entry| entry["status"] == 201)
        .expect("the write is audited");
    assert_eq!(
        write["actor"],
        format!("system:serviceaccount:{}:deployer", site.namespace)
    );
    assert_eq!(write["team"], "payments");
    op.stop().await;
}
