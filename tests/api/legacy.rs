//! Documents in the original operator's shape, from `tests/samples/legacy/` (copies of `shared/samples/legacy/`).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{pointers, problem, spawn_app};

fn sample(name: &str) -> String {
    let path = format!("{}/tests/samples/legacy/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn post_yaml(
    app: &crate::helpers::TestApp,
    namespace: &str,
    yaml: String,
) -> reqwest::Response {
    app.client
        .post(app.collection(namespace))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_original_sample_registers_and_shows_the_converted_document() {
    let app = spawn_app().await;
    for (file, namespace) in [
        ("complex.yaml", "external-service"),
        ("http-probe.yaml", "external-services"),
        ("tcp-probe.yaml", "external-services"),
    ] {
        let response = post_yaml(&app, namespace, sample(file)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{file}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["apiVersion"], "extsvc.dev/v1alpha1", "{file}");
        assert!(
            body["spec"].get("ips").is_none() && body["spec"]["endpoints"].is_array(),
            "{file}"
        );
        let stored: Value = app
            .get(&app.item(namespace, body["metadata"]["name"].as_str().unwrap()))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            stored, body,
            "{file}: the converted document is what is stored"
        );
    }
}

#[tokio::test]
async fn the_http_sample_converts_port_ips_hosts_annotations_and_probe() {
    let app = spawn_app().await;

    let body: Value = post_yaml(&app, "external-services", sample("http-probe.yaml"))
        .await
        .json()
        .await
        .unwrap();

    let spec = &body["spec"];
    assert_eq!(
        spec["ports"],
        json!([{"name": "port-80", "port": 80, "protocol": "TCP"}])
    );
    assert_eq!(spec["endpoints"], json!([{"address": "192.168.22.128"}]));
    assert_eq!(
        spec["ingress"],
        json!({
            "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/"},
            "rules": [{"host": "subdomain.example.com", "paths": [{"path": "/", "pathType": "Prefix", "port": "port-80"}]}]
        })
    );
    assert!(
        body["metadata"].get("annotations").is_none(),
        "annotations moved to the Ingress"
    );
    assert_eq!(
        spec["healthChecks"],
        json!([{
            "name": "readiness",
            "http": {"port": 9090, "path": "/", "scheme": "HTTP", "expectedStatuses": ["200-399"]},
            "periodSeconds": 10, "timeoutSeconds": 1, "initialDelaySeconds": 30,
            "successThreshold": 1, "failureThreshold": 3
        }])
    );
}

#[tokio::test]
async fn errors_in_a_legacy_document_point_at_the_fields_written() {
    let app = spawn_app().await;
    let yaml = sample("complex.yaml")
        .replace("port: 80\n", "port: 0\n")
        .replace("- 10.0.100.11", "- 10.0.100.300")
        .replace("static2.mydomain.com", "-bad-");

    let body = problem(
        post_yaml(&app, "external-service", yaml).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    assert_eq!(
        pointers(&body),
        ["/spec/port", "/spec/ips/1", "/spec/hosts/1/host"]
    );

    let yaml = sample("complex.yaml")
        .replace("- 10.0.100.11", "- 10.0.100.300")
        .replace("static2.mydomain.com", "-bad-")
        .replace("timeoutSeconds: 2", "timeoutSeconds: 20");
    let body = problem(
        post_yaml(&app, "external-service", yaml).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(
        pointers(&body),
        [
            "/spec/ips/1",
            "/spec/readinessProbe/timeoutSeconds",
            "/spec/hosts/1/host"
        ]
    );
}

#[tokio::test]
async fn probes_that_cannot_run_outside_the_cluster_are_refused() {
    let app = spawn_app().await;
    let yaml = sample("tcp-probe.yaml").replace(
        "tcpSocket:\n      port: 9090",
        "exec:\n      command: [true]",
    );

    let body = problem(
        post_yaml(&app, "external-services", yaml).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    assert_eq!(pointers(&body), ["/spec/readinessProbe/exec"]);
}
