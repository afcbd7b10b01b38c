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
    let document: Value =
        serde_json::from_str(&extsvc::api::ApiDoc::to_pretty_json().expect("the document"))
            .expect("JSON");
    let operations: usize = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |methods| methods.len()))
        .sum();
    assert_eq!(
        rendered, operations,
        "every operation is rendered: {rendered} found"
    );
    // The document's bearer scheme gives the page its Authorize button.
    assert!(
        dom.contains("btn authorize"),
        "Swagger UI shows no Authorize button"
    );
}

/// A client generated from the document never sends what the server refuses: every
/// path parameter and `If-Match` carries the server's pattern, list lengths their bounds,
/// and each `limit`'s documented range is exactly the one the server takes.
#[tokio::test]
async fn the_documents_bounds_are_the_servers() {
    let app = spawn_app().await;
    let doc: Value = app
        .get(&format!("{}/openapi.json", app.address))
        .await
        .json()
        .await
        .unwrap();

    let mut limits = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let (name, schema) = (&parameter["name"], &parameter["schema"]);
                let constrained = match (parameter["in"].as_str(), name.as_str()) {
                    (Some("path"), _) => {
                        schema["pattern"].is_string() && schema["maxLength"].is_u64()
                    }
                    (_, Some("If-Match" | "continue")) => schema["pattern"].is_string(),
                    (_, Some("limit")) => schema["type"] == "integer" && schema["minimum"] == 1,
                    _ => true,
                };
                assert!(constrained, "{method} {path}: {parameter}");
                // Lists (not a service's history: its service would have to exist).
                if name == "limit" && !path.contains("{name}") {
                    let max = schema["maximum"].as_i64().unwrap();
                    let url = format!("{}{}", app.address, path.replace("{namespace}", "payments"));
                    for (limit, expected) in [
                        (max, StatusCode::OK),
                        (1, StatusCode::OK),
                        (max + 1, StatusCode::BAD_REQUEST),
                        (0, StatusCode::BAD_REQUEST),
                    ] {
                        let status = app.get(&format!("{url}?limit={limit}")).await.status();
                        assert_eq!(status, expected, "{path}?limit={limit}");
                    }
                    limits += 1;
                }
            }
        }
    }
    assert_eq!(limits, 4, "the four listings");

    let schemas = &doc["components"]["schemas"];
    let spec = &schemas["ExternalServiceSpec"]["properties"];
    assert_eq!(spec["ports"]["minItems"], 1);
    assert_eq!(spec["endpoints"]["minItems"], 1);
    assert_eq!(spec["endpoints"]["maxItems"], 1000);
    assert_eq!(schemas["Endpoint"]["properties"]["ports"]["minItems"], 1);
}

/// The component a content's schema names, if it names one.
fn component(content: &Value) -> Option<&str> {
    content["schema"]["$ref"].as_str()?.rsplit('/').next()
}

#[test]
fn every_operation_shows_an_example_request_and_answer() {
    let document: Value =
        serde_json::from_str(&extsvc::api::ApiDoc::to_pretty_json().expect("the document"))
            .expect("JSON");
    let schemas = &document["components"]["schemas"];
    let has_example = |content: &Value| {
        content.get("example").is_some()
            || component(content).is_some_and(|name| schemas[name].get("examples").is_some())
    };
    let mut missing = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            let bodies = operation["requestBody"]["content"].as_object();
            for (media_type, content) in bodies.into_iter().flatten() {
                if !has_example(content) {
                    missing.push(format!("{method} {path} request {media_type}"));
                }
            }
            for (status, response) in operation["responses"].as_object().expect("responses") {
                if !status.starts_with('2') {
                    continue;
                }
                for (media_type, content) in response["content"].as_object().into_iter().flatten() {
                    if !has_example(content) {
                        missing.push(format!("{method} {path} {status} {media_type}"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "no example: {missing:#?}");
}

#[tokio::test]
async fn the_examples_are_what_the_api_takes_and_gives() {
    use extsvc::resource::{
        ExternalServiceDocument, ExternalServiceList, HealthHistory, HealthList, MaintenanceList,
        MaintenanceRequest, ServiceEvent, ServiceHealth,
    };
    let examples: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/openapi/examples.json"
        ))
        .expect("openapi/examples.json"),
    )
    .expect("JSON");
    fn decodes<T: serde::de::DeserializeOwned>(examples: &Value, name: &str) {
        if let Err(error) = serde_json::from_value::<T>(examples[name].clone()) {
            panic!("the example of {name} does not decode: {error}");
        }
    }
    decodes::<ExternalServiceDocument>(&examples, "ExternalServiceDocument");
    decodes::<ExternalServiceList>(&examples, "ExternalServiceList");
    decodes::<ServiceHealth>(&examples, "ServiceHealth");
    decodes::<HealthList>(&examples, "HealthList");
    decodes::<HealthHistory>(&examples, "HealthHistory");
    decodes::<ServiceEvent>(&examples, "ServiceEvent");
    decodes::<MaintenanceList>(&examples, "MaintenanceList");
    decodes::<MaintenanceRequest>(&examples, "request:MaintenanceRequest");
    decodes::<extsvc::api::DryRunResult>(&examples, "DryRunResult");

    // The request examples are accepted as they stand.
    let app = spawn_app().await;
    let team = app
        .client
        .put(format!("{}/api/v1/teams/payments", app.address))
        .json(&examples["request:TeamDocument"])
        .send()
        .await
        .expect("PUT answers");
    assert_eq!(team.status(), StatusCode::CREATED);
    let token = app
        .client
        .post(format!("{}/api/v1/teams/payments/tokens", app.address))
        .json(&examples["request:TokenRequest"])
        .send()
        .await
        .expect("POST answers");
    assert_eq!(token.status(), StatusCode::CREATED);
    let registered = app
        .post("payments", &examples["request:ExternalServiceDocument"])
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
}
