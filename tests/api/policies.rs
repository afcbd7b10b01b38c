//! The platform's policies at registration: every denied address and Ingress setting
//! is refused under its field.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{document, problem, spawn_app, spawn_app_with};

/// `document(name)` with these endpoint addresses.
fn with_addresses(name: &str, addresses: &[&str]) -> serde_json::Value {
    let mut doc = document(name);
    doc["spec"]["endpoints"] = addresses
        .iter()
        .map(|address| json!({"address": address}))
        .collect();
    doc
}

/// The JSON pointers a problem document names, in order.
fn pointers(problem: &serde_json::Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_built_in_ranges_are_refused_in_every_disguise() {
    let app = spawn_app().await;
    let denied = [
        "239.1.1.1",
        "fd00:ec2::254",
        "::ffff:239.1.1.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1",
    ];
    let mut addresses = vec!["192.0.2.10"];
    addresses.extend(denied);
    for response in [
        app.post("team", &with_addresses("db", &addresses)).await,
        app.put("team", "db", &with_addresses("db", &addresses))
            .await,
    ] {
        let refused = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let pointers = pointers(&refused);
        assert_eq!(
            pointers,
            (1..=denied.len())
                .map(|i| format!("/spec/endpoints/{i}/address"))
                .collect::<Vec<_>>(),
            "{refused}"
        );
        assert!(
            refused["errors"][3]["detail"]
                .as_str()
                .unwrap()
                .contains("169.254.169.254 is in 169.254.0.0/16"),
            "{refused}"
        );
    }
    assert_eq!(
        app.get(&app.item("team", "db")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn configured_ranges_are_refused_and_exceptions_let_addresses_through() {
    let app = spawn_app_with(|settings| {
        settings.denied_cidrs = Some("10.0.0.0/8".into());
        settings.cluster_cidrs = Some("172.20.0.0/16".into());
        settings.allowed_cidrs = Some("10.9.0.0/16".into());
    })
    .await;
    let refused = problem(
        app.post(
            "team",
            &with_addresses("db", &["10.1.2.3", "172.20.0.10", "10.9.0.5"]),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(refused["errors"].as_array().unwrap().len(), 2, "{refused}");
    assert!(
        refused["errors"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("the cluster's own range"),
        "{refused}"
    );
    let response = app.post("team", &with_addresses("db", &["10.9.0.5"])).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_ingress_that_would_configure_the_shared_controller_is_refused_field_by_field() {
    let app = spawn_app().await;
    let mut doc = document("web");
    doc["spec"]["ingress"] = json!({
        "className": "public",
        "annotations": {"nginx.ingress.kubernetes.io/configuration-snippet": "return 200;"},
        "rules": [{"paths": [{"path": "/", "pathType": "Prefix", "port": "https"}]}]
    });
    let refused = problem(
        app.post("team", &doc).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let pointers = pointers(&refused);
    assert_eq!(
        pointers,
        [
            "/spec/ingress/className",
            "/spec/ingress/annotations/nginx.ingress.kubernetes.io~1configuration-snippet",
            "/spec/ingress/rules/0/host",
        ]
    );

    // What the platform allows goes through.
    let app = spawn_app_with(|settings| {
        settings.ingress_classes = Some("public".into());
        settings.denied_ingress_annotations = Some("none".into());
        settings.allow_catch_all_ingress = true;
    })
    .await;
    assert_eq!(app.post("team", &doc).await.status(), StatusCode::CREATED);
}
