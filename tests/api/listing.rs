//! Listing: pages, continue tokens and label selectors.

use std::collections::HashSet;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, document, problem, spawn_app};

async fn register_many(app: &TestApp, namespace: &str, names: impl Iterator<Item = String>) {
    futures::stream::iter(names)
        .map(|name| async move {
            let status = app.post(namespace, &document(&name)).await.status();
            assert_eq!(status, StatusCode::CREATED, "{name}");
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

async fn page(app: &TestApp, url: &str) -> Value {
    let response = app.get(url).await;
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.json().await.unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item["metadata"]["namespace"].as_str().unwrap(),
                item["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn walking_1000_items_page_by_page_returns_each_exactly_once_while_items_are_added() {
    let app = spawn_app().await;
    register_many(&app, "a", (0..500).map(|i| format!("svc-{i:04}"))).await;
    register_many(&app, "b", (0..500).map(|i| format!("svc-{i:04}"))).await;

    let mut seen = Vec::new();
    let mut url = format!("{}/api/v1/external-services?limit=70", app.address);
    let mut pages = 0;
    loop {
        let list = page(&app, &url).await;
        assert_eq!(list["kind"], "ExternalServiceList");
        seen.extend(names(&list));
        pages += 1;
        // Items added during the walk, before and after the cursor.
        register_many(
            &app,
            "a",
            [format!("added-{pages}"), format!("zz-added-{pages}")].into_iter(),
        )
        .await;
        match list["metadata"]["continue"].as_str() {
            Some(token) => {
                url = format!(
                    "{}/api/v1/external-services?limit=70&continue={token}",
                    app.address
                )
            }
            None => break,
        }
    }

    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an item came twice");
    for ns in ["a", "b"] {
        for i in 0..500 {
            assert!(
                unique.contains(&format!("{ns}/svc-{i:04}")),
                "{ns}/svc-{i:04} missing"
            );
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "pages come in namespace/name order");
    assert!(pages >= 15);
}

#[tokio::test]
async fn a_namespaced_list_has_only_that_namespace_and_defaults_to_50() {
    let app = spawn_app().await;
    register_many(&app, "a", (0..60).map(|i| format!("svc-{i:02}"))).await;
    register_many(&app, "b", (0..3).map(|i| format!("svc-{i:02}"))).await;

    let first = page(&app, &app.collection("a")).await;
    assert_eq!(names(&first).len(), 50);
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a second page");
    let second = page(&app, &format!("{}?continue={token}", app.collection("a"))).await;
    assert_eq!(names(&second).len(), 10);
    assert!(
        second["metadata"].get("continue").is_none(),
        "the last page has no token"
    );
    assert!(
        names(&first)
            .iter()
            .chain(&names(&second))
            .all(|n| n.starts_with("a/"))
    );
}

#[tokio::test]
async fn limit_and_continue_are_checked() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=501",
        "limit=ten",
        "limit=-1",
        "continue=%%%",
        "continue=bm90aGluZw",
    ] {
        let response = app.get(&format!("{}?{query}", app.collection("a"))).await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        let parameter = query.split('=').next().unwrap();
        assert_eq!(body["errors"][0]["parameter"], parameter, "{query}");
    }
    assert_eq!(
        app.get(&format!("{}?limit=500", app.collection("a")))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn label_selectors_filter_like_kubernetes() {
    let app = spawn_app().await;
    for (name, labels) in [
        ("prod-db", json!({"env": "prod", "tier": "db"})),
        ("prod-web", json!({"env": "prod"})),
        ("dev-db", json!({"env": "dev", "tier": "db"})),
        ("bare", json!({})),
    ] {
        let mut doc = document(name);
        doc["metadata"]["labels"] = labels;
        assert_eq!(app.post("ns", &doc).await.status(), StatusCode::CREATED);
    }
    let cases = [
        ("env=prod", vec!["prod-db", "prod-web"]),
        ("env==prod,tier=db", vec!["prod-db"]),
        ("env!=prod", vec!["bare", "dev-db"]),
        ("env in (dev, staging)", vec!["dev-db"]),
        ("env notin (prod)", vec!["bare", "dev-db"]),
        ("tier", vec!["dev-db", "prod-db"]),
        ("!tier", vec!["bare", "prod-web"]),
        ("!env", vec!["bare"]),
        ("env=qa", vec![]),
    ];
    for (selector, expected) in cases {
        let url =
            reqwest::Url::parse_with_params(&app.collection("ns"), [("labelSelector", selector)])
                .unwrap();
        let list = page(&app, url.as_str()).await;
        let got: Vec<_> = names(&list)
            .into_iter()
            .map(|n| n.trim_start_matches("ns/").to_owned())
            .collect();
        assert_eq!(got, expected, "{selector}");
    }
}

#[tokio::test]
async fn a_malformed_label_selector_is_400() {
    let app = spawn_app().await;
    let url =
        reqwest::Url::parse_with_params(&app.collection("ns"), [("labelSelector", "env in (a")])
            .unwrap();

    let body = problem(app.get(url.as_str()).await, StatusCode::BAD_REQUEST).await;

    assert_eq!(body["errors"][0]["parameter"], "labelSelector");
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("character 10")
    );
}
