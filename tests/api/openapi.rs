//! The OpenAPI document and Swagger UI.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn served_openapi_equals_the_committed_file() {
    let app = spawn_app().await;
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json is committed");

    let served: Value = app
        .get(&format!("{}/openapi.json", app.address))
        .await
        .json()
        .await
        .unwrap();

    let committed: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(
        served, committed,
        "openapi/openapi.json is stale: run scripts/generate"
    );
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[tokio::test]
async fn swagger_ui_renders_every_operation_in_headless_chromium() {
    let app = spawn_app().await;
    let page = app.get(&format!("{}/swagger-ui/", app.address)).await;
    assert_eq!(page.status(), StatusCode::OK);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/swagger-ui/", app.address);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            // Let scripts run (and fetch /openapi.json) before the DOM is printed.
            .args(["--virtual-time-budget=15000", "--dump-dom", &url])
            .output()
    })
    .await
    .unwrap()
    .expect("chromium runs (Debian package `chromium`)");
    let dom = String::from_utf8_lossy(&output.stdout);

    for operation in [
        "/api/v1/namespaces/{namespace}/external-services",
        "/api/v1/namespaces/{namespace}/external-services/{name}",
        "/api/v1/external-services",
    ] {
        assert!(dom.contains(operation), "Swagger UI shows no {operation}");
    }
    let rendered = dom.matches("opblock-summary-method").count();
    assert_eq!(
        rendered, 12,
        "every operation is rendered: {rendered} found"
    );
}
