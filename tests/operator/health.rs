//! Health checks end to end: real backends on test hosts, a real API server. Readiness
//! in EndpointSlices and Endpoints follows the backends, the health API agrees with the
//! resource's status, and a restart of the operator flips nothing.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::helpers::{
    Site, TestOperator, control_plane, eventually, slice_addresses, spawn_operator,
};
use crate::netns::TestHosts;

/// One namespace of test hosts for the whole binary (a process may make one); each test
/// takes its own addresses.
pub fn hosts() -> &'static TestHosts {
    static HOSTS: OnceLock<TestHosts> = OnceLock::new();
    HOSTS.get_or_init(|| TestHosts::create(13))
}

/// The next unused test host address.
pub fn take_ip() -> std::net::IpAddr {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let index = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    hosts().ips[index]
}

/// A registration of `backends` (all on one port) with an HTTP check every second.
fn checked(name: &str, backends: &[&Backend], failure_threshold: u32) -> Value {
    let port = backends[0].address.port();
    json!({
        "metadata": {"name": name},
        "spec": {
            "ports": [{"name": "http", "port": port}],
            "endpoints": backends.iter().map(|b| json!({"address": b.address.ip().to_string()})).collect::<Vec<_>>(),
            "healthChecks": [{
                "name": "up",
                "http": {"port": "http", "path": "/healthz"},
                "periodSeconds": 1, "timeoutSeconds": 1,
                "successThreshold": 1, "failureThreshold": failure_threshold
            }]
        }
    })
}

async fn readiness(op: &TestOperator, name: &str) -> Vec<(String, bool)> {
    slice_addresses(&op.slices_of(name).await)
}

async fn wait_for(op: &TestOperator, name: &str, expected: &[(&Backend, bool)]) {
    let mut want: Vec<(String, bool)> = expected
        .iter()
        .map(|(b, ready)| (b.address.ip().to_string(), *ready))
        .collect();
    want.sort();
    eventually(
        30,
        &format!("slices of {name} to show {want:?}"),
        || async { (readiness(op, name).await == want).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn endpoint_slices_and_endpoints_follow_the_backends() {
    let op = spawn_operator().await;
    let healthy = Backend::start(hosts(), take_ip(), 0, 200);
    let failing = Backend::start(hosts(), take_ip(), healthy.address.port(), 503);
    assert_eq!(
        op.put("web", &checked("web", &[&healthy, &failing], 1))
            .await,
        StatusCode::CREATED
    );

    wait_for(&op, "web", &[(&healthy, true), (&failing, false)]).await;
    // The same reconcile applies the legacy Endpoints right after the slices.
    let ips = |list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        list.iter()
            .flatten()
            .map(|a| a.ip.clone())
            .collect::<Vec<_>>()
    };
    let want = (
        vec![healthy.address.ip().to_string()],
        vec![failing.address.ip().to_string()],
    );
    eventually(30, "the Endpoints to say the same", || async {
        let endpoints = op.endpoints().get("web").await.ok()?;
        let subset = endpoints.subsets?.into_iter().next()?;
        let have = (ips(&subset.addresses), ips(&subset.not_ready_addresses));
        (have == want).then_some(())
    })
    .await;

    failing.set_status(200);
    wait_for(&op, "web", &[(&healthy, true), (&failing, true)]).await;
    healthy.set_status(500);
    wait_for(&op, "web", &[(&healthy, false), (&failing, true)]).await;
}

#[tokio::test]
async fn an_address_recovers_after_an_outage() {
    let op = spawn_operator().await;
    let ip = take_ip();
    let backend = Backend::start(hosts(), ip, 0, 200);
    op.put("db", &checked("db", &[&backend], 2)).await;
    wait_for(&op, "db", &[(&backend, true)]).await;

    let address = backend.stop();
    let (_, health) = eventually(30, "the outage to show", || async {
        let (status, health) = op.health("db").await;
        let check = &health["addresses"][0]["checks"][0];
        (check["state"] == "notReady").then_some((status, health))
    })
    .await;
    assert_eq!(
        health["addresses"][0]["checks"][0]["lastError"],
        "connection refused"
    );
    assert_eq!(readiness(&op, "db").await, [(ip.to_string(), false)]);

    let backend = restart(address).await;
    wait_for(&op, "db", &[(&backend, true)]).await;
    // History is published every couple of seconds.
    let moves = eventually(30, "three transitions in the history", || async {
        let history = op.health_history("db").await;
        let moves: Vec<(String, String)> = history["transitions"]
            .as_array()?
            .iter()
            .map(|t| {
                (
                    t["from"].as_str().unwrap_or_default().to_owned(),
                    t["to"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        (moves.len() >= 3).then_some(moves)
    })
    .await;
    assert_eq!(
        moves[..3],
        [
            ("notReady".to_owned(), "ready".to_owned()),
            ("ready".to_owned(), "notReady".to_owned()),
            ("unknown".to_owned(), "ready".to_owned())
        ],
        "newest first"
    );
}

/// Listens again on a stopped backend's address (the port may take a moment to free).
async fn restart(address: std::net::SocketAddr) -> Backend {
    for _ in 0..50 {
        if let Ok(backend) = Backend::try_start(hosts(), address.ip(), address.port(), 200) {
            return backend;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not listen on {address} again");
}

#[tokio::test]
async fn the_health_api_and_the_resource_status_agree() {
    let op = spawn_operator().await;
    let up = Backend::start(hosts(), take_ip(), 0, 200);
    let down = Backend::start(hosts(), take_ip(), up.address.port(), 426);
    // And a name that resolves to nothing: not ready in both, with the reason.
    let mut registration = checked("pay", &[&up, &down], 1);
    registration["spec"]["endpoints"]
        .as_array_mut()
        .unwrap()
        .push(json!({"address": "nothing.invalid"}));
    op.put("pay", &registration).await;
    wait_for(&op, "pay", &[(&up, true), (&down, false)]).await;

    // Each transition is published as it happens: wait for the one of the failing
    // address too, not only for the counts.
    let (status, health) = eventually(30, "published health", || async {
        let (status, health) = op.health("pay").await;
        let probed = health["addresses"]
            .as_array()?
            .iter()
            .flat_map(|a| a["checks"].as_array().into_iter().flatten())
            .all(|c| c["lastResult"].is_string());
        (health["readyAddresses"] == 1 && health["totalAddresses"] == 3 && probed)
            .then_some((status, health))
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    let from_health: BTreeMap<String, bool> = health["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap().to_owned(),
                a["state"] == "ready",
            )
        })
        .collect();
    // The resource's status is written at the end of the reconcile that applied the
    // slices waited for above.
    eventually(30, "the resource's status to say the same", || async {
        let status = op.external_services().get("pay").await.ok()?.status?;
        let from_status: BTreeMap<String, bool> = status
            .addresses
            .into_iter()
            .map(|a| (a.address, a.ready))
            .collect();
        (from_status == from_health).then_some(())
    })
    .await;
    assert_eq!(from_health.get("nothing.invalid"), Some(&false));
    let addresses = health["addresses"].as_array().unwrap();
    let unresolved = addresses
        .iter()
        .find(|a| a["address"] == "nothing.invalid")
        .unwrap();
    assert_eq!(unresolved["state"], "notReady");
    assert!(unresolved["message"].is_string(), "{unresolved}");
    let failing = addresses
        .iter()
        .find(|a| a["address"] == down.address.ip().to_string())
        .unwrap();
    assert_eq!(
        failing["checks"][0]["lastError"], "status 426",
        "a status outside 200-399 is a failure"
    );
    assert!(
        failing["checks"][0]["consecutiveFailures"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(failing["checks"][0]["lastProbeTime"].is_string());

    let (_, document) = op.get("pay").await;
    assert_eq!(document["status"]["ready"], "1/3");
    let unready = op
        .get_json(&format!(
            "/api/v1/health?state=unready&namespace={}",
            op.namespace
        ))
        .await;
    let names: Vec<_> = unready["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, [json!("pay")]);
    let metrics = op.metric("extsvc_service_ready_addresses").await;
    assert!(metrics >= 1.0);
}

#[tokio::test]
async fn a_restart_of_the_operator_flips_nothing() {
    let site = Site::on(control_plane().await).await;
    let first = site.start("first").await;
    let a = Backend::start(hosts(), take_ip(), 0, 200);
    let b = Backend::start(hosts(), take_ip(), a.address.port(), 200);
    first.put("steady", &checked("steady", &[&a, &b], 3)).await;
    wait_for(&first, "steady", &[(&a, true), (&b, true)]).await;

    // Record every version of the slices from now on.
    let slices: kube::Api<EndpointSlice> = first.api();
    let flipped = tokio::spawn(async move {
        let mut events = std::pin::pin!(
            watcher(slices, watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        while let Some(Ok(slice)) = events.next().await {
            if slice
                .endpoints
                .iter()
                .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(false))
            {
                return true;
            }
        }
        false
    });
    first.stop().await;
    let second = site.start("second").await;
    // Long enough for the new engine to probe every address several times.
    tokio::time::sleep(Duration::from_secs(6)).await;

    assert_eq!(
        readiness(&second, "steady")
            .await
            .iter()
            .filter(|(_, ready)| *ready)
            .count(),
        2
    );
    flipped.abort();
    assert!(
        !flipped.await.unwrap_or(false),
        "an address was marked not ready across the restart"
    );
    let (_, health) = second.health("steady").await;
    assert_eq!(health["readyAddresses"], 2);
}
