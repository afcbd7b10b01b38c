//! `/metrics` as scrapers read it: the format `Accept` asks for, declared as what it is,
//! clean under `promtool check metrics`, and read with the right types by a real
//! Prometheus (Debian's package `prometheus`, which `scripts/test` installs).

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, spawn_app};
use crate::prometheus::Prometheus;

const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What Prometheus 2.42 asks for.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The content type, `Vary` and body of `/metrics`.
async fn scrape(app: &TestApp, accept: Option<&str>) -> (String, String, String) {
    let mut request = app.client.get(format!("{}/metrics", app.address));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("/metrics answers");
    assert!(response.status().is_success(), "{response:?}");
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (content_type, vary) = (header("content-type"), header("vary"));
    (content_type, vary, response.text().await.expect("a body"))
}

#[tokio::test]
async fn metrics_are_classic_text_unless_openmetrics_is_preferred() {
    let app = spawn_app().await;
    for (accept, expected) in [
        (None, CLASSIC),
        (Some("*/*"), CLASSIC),
        (Some("text/plain;version=0.0.4"), CLASSIC),
        (Some("application/openmetrics-text"), OPENMETRICS),
        (Some(PROMETHEUS_ACCEPT), OPENMETRICS),
    ] {
        let (content_type, vary, _) = scrape(&app, accept).await;
        assert_eq!(content_type, expected, "Accept: {accept:?}");
        assert_eq!(vary, "Accept");
    }

    let (_, _, classic) = scrape(&app, None).await;
    assert!(
        classic.contains("# HELP extsvc_kubernetes_writes_total Writes sent to the Kubernetes API.\n# TYPE extsvc_kubernetes_writes_total counter\n"),
        "{classic}"
    );
    assert!(!classic.contains("# EOF"), "{classic}");

    let (_, _, openmetrics) = scrape(&app, Some(PROMETHEUS_ACCEPT)).await;
    assert!(
        openmetrics.contains("# TYPE extsvc_kubernetes_writes counter\n"),
        "{openmetrics}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
}

#[tokio::test]
async fn promtool_finds_nothing_wrong_with_the_classic_format() {
    let app = spawn_app().await;
    let (_, _, body) = scrape(&app, None).await;

    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus)");
    let mut stdin = promtool.stdin.take().expect("stdin is piped");
    stdin.write_all(body.as_bytes()).await.expect("write");
    drop(stdin);
    let output = promtool.wait_with_output().await.expect("promtool ends");

    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn prometheus_reads_the_metrics_with_their_types() {
    let app = spawn_app().await;
    let mut prometheus = Prometheus::scraping(
        app.address.trim_start_matches("http://"),
        crate::settings::METRICS_TOKEN,
    );

    // What a server without Kubernetes exports; tests/operator checks the rest.
    let metadata = prometheus
        .wait_for_types(
            &[
                ("extsvc_kubernetes_writes", "counter"),
                ("extsvc_reconciles", "counter"),
                ("extsvc_reconcile_duration_seconds", "histogram"),
            ],
            60,
        )
        .await;
    assert_eq!(
        metadata["data"]["extsvc_kubernetes_writes"][0]["help"],
        "Writes sent to the Kubernetes API."
    );
}

#[tokio::test]
async fn the_metrics_token_reads_metrics_and_nothing_else() {
    let app = spawn_app().await;
    let metrics = crate::settings::client_with(crate::settings::METRICS_TOKEN);
    let scrape = metrics
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), reqwest::StatusCode::OK);
    let list = metrics
        .get(format!("{}/api/v1/external-services", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), reqwest::StatusCode::UNAUTHORIZED);
}
