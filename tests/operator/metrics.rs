//! `/metrics` of a working operator, as a real Prometheus reads it: every family, with
//! its type, and label values in lower case.

use serde_json::json;

use crate::helpers::spawn_operator;
use crate::prometheus::Prometheus;

#[tokio::test]
async fn prometheus_reads_every_family_with_its_type() {
    let op = spawn_operator().await;
    // A TEST-NET address answers nothing: its TCP check times out every second.
    let status = op
        .put(
            "silent",
            &json!({
                "metadata": {"name": "silent"},
                "spec": {
                    "ports": [{"name": "tcp", "port": 5432}],
                    "endpoints": [{"address": "192.0.2.10"}],
                    "healthChecks": [{"name": "up", "tcp": {"port": "tcp"},
                        "periodSeconds": 1, "timeoutSeconds": 1}]
                }
            }),
        )
        .await;
    assert!(status.is_success(), "{status}");
    let mut prometheus = Prometheus::scraping(
        op.address.trim_start_matches("http://"),
        crate::settings::METRICS_TOKEN,
    );

    prometheus
        .wait_for_types(
            &[
                ("extsvc_kubernetes_writes", "counter"),
                ("extsvc_reconciles", "counter"),
                ("extsvc_probe_results", "counter"),
                ("extsvc_reconcile_duration_seconds", "histogram"),
                ("extsvc_probe_duration_seconds", "histogram"),
                ("extsvc_service_ready_addresses", "gauge"),
                ("extsvc_service_addresses", "gauge"),
                ("extsvc_mirror_unknown_registrations", "gauge"),
            ],
            120,
        )
        .await;

    let text = op.metrics_text().await;
    for sample in [
        r#"extsvc_probe_results_total{check="tcp",outcome="timeout"}"#,
        r#"extsvc_kubernetes_writes_total{kind="endpoint_slice",operation="apply"}"#,
        r#"extsvc_reconciles_total{result="ok"}"#,
    ] {
        assert!(text.contains(sample), "no {sample} in {text}");
    }
}
