//! Pipelines end to end, against a real control plane: `extsvc wait` returns when a
//! backend on a test host turns healthy, maintenance takes an address out of the
//! EndpointSlice and puts it back by itself, a dry run leaves the cluster alone, and the
//! event stream of any replica carries readiness changes.

use std::process::Output;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::health::{hosts, take_ip};
use crate::helpers::{Site, TestOperator, control_plane, eventually, slice_addresses};

fn extsvc(op: &TestOperator, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_extsvc"));
    command
        .args(args)
        .env("EXTSVC_SERVER", &op.address)
        .env("EXTSVC_TOKEN", crate::settings::ADMIN_TOKEN)
        .env("EXTSVC_NAMESPACE", &op.namespace)
        .kill_on_drop(true);
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A registration of one backend with an HTTP check every second.
fn checked(name: &str, backend: &Backend) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "ports": [{"name": "http", "port": backend.address.port()}],
            "endpoints": [{"address": backend.address.ip().to_string()}],
            "healthChecks": [{
                "name": "up",
                "http": {"port": "http", "path": "/healthz"},
                "periodSeconds": 1, "timeoutSeconds": 1,
                "successThreshold": 1, "failureThreshold": 1
            }]
        }
    })
}

/// Two addresses and no checks: both ready at once, and nothing is ever sent to them.
fn unchecked(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "ports": [{"name": "pg", "port": 5432}],
            "endpoints": [{"address": "192.0.2.21"}, {"address": "192.0.2.22"}]
        }
    })
}

/// The service's status as the API shows it, once the controller has reconciled its
/// current generation.
async fn reconciled(op: &TestOperator, name: &str) -> Value {
    eventually(60, &format!("{name} to be reconciled"), || async {
        let (_, document) = op.get(name).await;
        let generation = document["metadata"]["generation"].clone();
        (document["status"]["observedGeneration"] == generation && !generation.is_null())
            .then_some(document)
    })
    .await
}

#[tokio::test]
async fn wait_returns_soon_after_the_backend_turns_healthy_and_times_out_with_its_code() {
    let op = Site::on(control_plane().await).await.start("only").await;
    let backend = Backend::start(hosts(), take_ip(), 0, 503);
    assert_eq!(
        op.put("web", &checked("web", &backend)).await,
        StatusCode::CREATED
    );
    let document = reconciled(&op, "web").await;
    assert_eq!(document["status"]["readyAddresses"], 0);
    eventually(30, "the check's failure in health", || async {
        let (_, health) = op.health("web").await;
        (health["addresses"][0]["checks"][0]["lastError"] == "status 503").then_some(())
    })
    .await;

    // Not ready within its timeout: the timeout's exit code, after the timeout and not
    // long after.
    let started = Instant::now();
    let timed_out: Output = extsvc(&op, &["wait", "web", "--for", "ready", "--timeout", "2s"])
        .output()
        .await
        .expect("extsvc runs");
    let took = started.elapsed();
    assert_eq!(timed_out.status.code(), Some(7), "{timed_out:?}");
    assert!(took >= Duration::from_secs(2), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(
        text(&timed_out.stderr).contains("is not ready after 2s")
            && text(&timed_out.stderr).contains("0 of 1 addresses ready")
            && text(&timed_out.stderr).contains(": up: status 503"),
        "{}",
        text(&timed_out.stderr)
    );

    // A wait in progress returns once the backend turns healthy: one probe period, the
    // controller, the mirror and the event on the way. The bound is generous for a
    // shared machine; bench/ measures the latency itself.
    let wait = extsvc(&op, &["wait", "web", "--for", "ready", "--timeout", "120s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("extsvc runs");
    let healthy_at = Instant::now();
    backend.set_status(200);
    let done = tokio::time::timeout(Duration::from_secs(60), wait.wait_with_output())
        .await
        .expect("the wait ends")
        .expect("extsvc runs");
    let after = healthy_at.elapsed();
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    assert_eq!(text(&done.stdout), format!("{}/web ready\n", op.namespace));
    assert!(
        after < Duration::from_secs(10),
        "returned {after:?} after the backend turned healthy"
    );

    // Health is published at each transition; usually before the status the wait reads.
    let table = eventually(30, "the health table to agree", || async {
        let health = extsvc(&op, &["health", "web"])
            .output()
            .await
            .expect("extsvc runs");
        let table = text(&health.stdout);
        (health.status.success() && table.contains("1 of 1 addresses ready")).then_some(table)
    })
    .await;
    assert!(table.contains(&backend.address.ip().to_string()), "{table}");
}

#[tokio::test]
async fn maintenance_takes_an_address_out_and_puts_it_back_when_it_ends() {
    let op = Site::on(control_plane().await).await.start("only").await;
    assert_eq!(op.put("pg", &unchecked("pg")).await, StatusCode::CREATED);
    let both = vec![
        ("192.0.2.21".to_owned(), true),
        ("192.0.2.22".to_owned(), true),
    ];
    eventually(60, "both addresses ready", || async {
        (slice_addresses(&op.slices_of("pg").await) == both).then_some(())
    })
    .await;

    let window = |until: chrono::DateTime<chrono::Utc>| json!({"addresses": ["192.0.2.22"], "reason": "kernel upgrade", "until": until.to_rfc3339()});
    let url = format!("{}/maintenance", op.item("pg"));
    let hour = chrono::Utc::now() + chrono::Duration::hours(1);
    let response = op
        .http
        .post(&url)
        .json(&window(hour))
        .send()
        .await
        .expect("POST answers");
    assert_eq!(response.status(), StatusCode::OK);

    let one_out = vec![
        ("192.0.2.21".to_owned(), true),
        ("192.0.2.22".to_owned(), false),
    ];
    eventually(30, "the address out of rotation", || async {
        (slice_addresses(&op.slices_of("pg").await) == one_out).then_some(())
    })
    .await;
    let document = eventually(30, "the status to say why", || async {
        let (_, document) = op.get("pg").await;
        document["status"]["addresses"][1]["message"]
            .is_string()
            .then_some(document)
    })
    .await;
    let message = document["status"]["addresses"][1]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.ends_with(": kernel upgrade"), "{document}");
    assert!(message.starts_with("maintenance until "), "{message}");

    // Moved to end in a moment; nobody ends it.
    let soon = chrono::Utc::now() + chrono::Duration::seconds(3);
    let response = op
        .http
        .post(&url)
        .json(&window(soon))
        .send()
        .await
        .expect("POST answers");
    assert_eq!(response.status(), StatusCode::OK);
    // Back by itself once `until` passes, with the spec untouched.
    eventually(60, "the address back in rotation", || async {
        (slice_addresses(&op.slices_of("pg").await) == both).then_some(())
    })
    .await;
    let (_, document) = op.get("pg").await;
    assert_eq!(document["metadata"]["generation"], 1);
    let cr = op
        .external_services()
        .get("pg")
        .await
        .expect("the ExternalService");
    assert_eq!(cr.metadata.generation, Some(1));
    let windows = op
        .get_json(&format!(
            "/api/v1/namespaces/{}/external-services/pg/maintenance",
            op.namespace
        ))
        .await;
    assert_eq!(windows["items"], json!([]));
}

#[tokio::test]
async fn a_dry_run_leaves_the_database_and_the_cluster_alone() {
    let op = Site::on(control_plane().await).await.start("only").await;
    let response = op
        .http
        .put(format!("{}?dryRun=true", op.item("ghost")))
        .json(&unchecked("ghost"))
        .send()
        .await
        .expect("PUT answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    // The outbox goes in order: once a later registration is in the cluster, one the dry
    // run had written would be too.
    assert_eq!(
        op.put("real", &unchecked("real")).await,
        StatusCode::CREATED
    );
    reconciled(&op, "real").await;
    assert!(
        op.external_services()
            .get_opt("ghost")
            .await
            .expect("a GET")
            .is_none()
    );
    assert!(
        op.services()
            .get_opt("ghost")
            .await
            .expect("a GET")
            .is_none()
    );
    assert_eq!(op.get("ghost").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_dry_run_probe_reports_a_refused_connection() {
    let op = Site::on(control_plane().await).await.start("only").await;
    // A port nothing listens on, on a test host.
    let ip = hosts().ips[0];
    let port = hosts()
        .listen(ip, 0)
        .expect("a listener")
        .local_addr()
        .expect("its address")
        .port();
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("db.yaml");
    std::fs::write(
        &file,
        format!("metadata:\n  name: db\nspec:\n  ports:\n  - name: pg\n    port: {port}\n  endpoints:\n  - address: {ip}\n  healthChecks:\n  - name: up\n    tcp:\n      port: pg\n"),
    )
    .expect("the manifest");

    let output = extsvc(
        &op,
        &[
            "apply",
            "--dry-run",
            "--probe",
            "-f",
            file.to_str().expect("a path"),
        ],
    )
    .output()
    .await
    .expect("extsvc runs");

    assert_eq!(output.status.code(), Some(9), "{output:?}");
    let table = text(&output.stdout);
    let namespace = &op.namespace;
    assert!(
        table.starts_with(&format!(
            "{namespace}/db created (dry run)\n{namespace}/db: 0 of 1 addresses ready\n"
        )),
        "{table}"
    );
    assert!(table.contains("connection refused"), "{table}");
    assert_eq!(op.get("db").await.0, StatusCode::NOT_FOUND);
}

/// Reads server-sent events until `until` accepts the types seen so far.
async fn read_events(
    response: reqwest::Response,
    mut until: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    use futures::StreamExt;
    let mut body = response.bytes_stream();
    let (mut buffer, mut events) = (String::new(), Vec::new());
    while !until(&events) {
        let chunk = tokio::time::timeout(Duration::from_secs(60), body.next())
            .await
            .unwrap_or_else(|_| panic!("events arrive; got {events:?}"))
            .expect("the stream stays open")
            .expect("a chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            for data in frame.lines().filter_map(|l| l.strip_prefix("data: ")) {
                events.push(serde_json::from_str(data).expect("JSON data"));
            }
        }
    }
    events
}

#[tokio::test]
async fn every_replica_streams_the_readiness_changes_the_leader_makes() {
    let site = Site::on(control_plane().await).await;
    let leader = site.start("leader").await;
    let api_only = site.start_api_only("api-only").await;
    let backend = Backend::start(hosts(), take_ip(), 0, 503);
    assert_eq!(
        leader.put("svc", &checked("svc", &backend)).await,
        StatusCode::CREATED
    );
    reconciled(&leader, "svc").await;

    let stream = api_only
        .http
        .get(format!("{}/events", api_only.item("svc")))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(stream.status(), StatusCode::OK);
    backend.set_status(200);
    let types = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect()
    };
    let events = read_events(stream, |events| {
        let seen = types(events);
        seen.contains(&"CheckReady".to_owned()) && seen.contains(&"AddressReady".to_owned())
    })
    .await;
    let ready = events
        .iter()
        .find(|e| e["type"] == "AddressReady")
        .expect("an AddressReady event");
    assert_eq!(ready["detail"]["address"], backend.address.ip().to_string());

    // A client that was away asks for what it missed since the first of them.
    let first = events[0]["id"].as_str().expect("an id").to_owned();
    let replay = api_only
        .http
        .get(format!("{}/events?follow=false", api_only.item("svc")))
        .header("Last-Event-ID", &first)
        .send()
        .await
        .expect("the replay opens");
    let replayed = read_events(replay, |seen| seen.len() + 1 >= events.len()).await;
    assert_eq!(
        replayed[..events.len() - 1],
        events[1..],
        "the events after {first}"
    );
}
