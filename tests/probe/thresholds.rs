//! Kubelet's threshold semantics on a real backend: transitions happen at exactly the
//! result the thresholds name, and seeds carry readiness across a restart.

use std::time::{Duration, Instant, SystemTime};

use extsvc::resource::{HealthState, ProbeResult};
use serde_json::json;

use crate::helpers::{LOCALHOST, Probing, key, local, within};
use crate::servers::HttpServer;

use HealthState::{NotReady as N, Ready as R, Unknown as U};

fn statuses(script: &str) -> Vec<u16> {
    script
        .chars()
        .map(|c| if c == '+' { 200 } else { 503 })
        .collect()
}

fn time_of(rfc3339: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("an RFC 3339 time")
        .with_timezone(&chrono::Utc)
        .into()
}

#[tokio::test]
async fn transitions_happen_at_exactly_the_result_the_thresholds_name() {
    within(50, async {
        // successThreshold 2, failureThreshold 2.
        let script = "+-++-+--++";
        // (consecutive successes, consecutive failures, state) after each result.
        let expected = [
            (1, 0, U), // one success is not two
            (0, 1, N), // never ready: the first failure decides
            (1, 0, N),
            (2, 0, R), // the second success in a row
            (0, 1, R), // one failure is not two
            (1, 0, R), // and a success starts the count again
            (0, 1, R),
            (0, 2, N), // the second failure in a row
            (1, 0, N),
            (2, 0, R),
        ];
        let server = HttpServer::start(200).await;
        server.script(&statuses(script));
        let mut probing = Probing::start();
        let svc = key("flapping");
        let check = json!({
            "name": "flap",
            "http": {"port": "web"},
            "successThreshold": 2,
            "failureThreshold": 2,
        });
        probing.watch_local(&svc, server.port, [check]);

        // Consecutive counts differ from one result to the next, so waiting for each
        // result's counts sees every result in turn.
        for (i, (successes, failures, state)) in expected.into_iter().enumerate() {
            let result = i + 1;
            let check = probing
                .until_check(&svc, LOCALHOST, "flap", &format!("result {result}"), |c| {
                    (c.consecutive_successes, c.consecutive_failures) == (successes, failures)
                })
                .await;
            assert_eq!(check.state, state, "after result {result}");
            let success = script.as_bytes()[i] == b'+';
            assert_eq!(
                check.last_result,
                Some(if success {
                    ProbeResult::Success
                } else {
                    ProbeResult::Failure
                }),
                "result {result}"
            );
            assert_eq!(
                probing.engine.readiness(&svc),
                local(state == R),
                "after result {result}"
            );
        }

        let transitions = probing.engine.take_transitions();
        let changes: Vec<_> = transitions
            .iter()
            .map(|(_, t)| (t.from, t.to, t.error.as_deref()))
            .collect();
        assert_eq!(
            changes,
            [
                (U, N, Some("status 503")),
                (N, R, None),
                (R, N, Some("status 503")),
                (N, R, None),
            ]
        );
        // A transition carries the start time of the probe that caused it; the server
        // received that probe's request after it, and the one before a period earlier.
        let requests = server.requests();
        let caused_by: Vec<usize> = transitions
            .iter()
            .map(|(_, t)| {
                let at = time_of(&t.time);
                1 + requests
                    .iter()
                    .position(|r| r.received_at >= at)
                    .expect("a request after the transition's probe started")
            })
            .collect();
        assert_eq!(
            caused_by,
            [2, 4, 8, 10],
            "results that caused the transitions"
        );
        // One wake-up per readiness change (results 4, 8, 10); unknown -> not ready at
        // result 2 changes the address's state but not its readiness, and may wake too.
        let wakes = probing.wakes();
        assert!((3..=4).contains(&wakes), "{wakes} wake-ups");
    })
    .await;
}

#[tokio::test]
async fn a_seeded_ready_address_is_ready_at_once_and_until_the_failure_threshold() {
    within(40, async {
        let server = HttpServer::start(503).await;
        let probing = Probing::start();
        let svc = key("seeded");
        // A seeded check skips its initial delay: it resumes, it does not start.
        let check = json!({
            "name": "up",
            "http": {"port": "web"},
            "failureThreshold": 3,
            "initialDelaySeconds": 3,
        });
        let started = Instant::now();
        probing.watch_seeded(&svc, server.port, [check], true);
        assert_eq!(
            probing.engine.readiness(&svc),
            local(true),
            "ready before any probe"
        );
        let report = probing.engine.report(&svc).expect("a report");
        assert_eq!(report.addresses[0].state, R);
        assert_eq!(report.addresses[0].checks[0].last_result, None);

        for failures in 1..=3 {
            let check = probing
                .until_check(&svc, LOCALHOST, "up", &format!("failure {failures}"), |c| {
                    c.consecutive_failures == failures
                })
                .await;
            let state = if failures < 3 { R } else { N };
            assert_eq!(check.state, state, "after failure {failures}");
            assert_eq!(
                probing.engine.readiness(&svc),
                local(state == R),
                "after failure {failures}"
            );
        }
        let first = server.requests()[0].received - started;
        assert!(
            first < Duration::from_millis(2500),
            "first probe after {first:?}, which is no initial delay of 3s"
        );
        let transitions = probing.engine.take_transitions();
        assert_eq!(transitions.len(), 1, "{transitions:#?}");
        assert_eq!((transitions[0].1.from, transitions[0].1.to), (R, N));
    })
    .await;
}

#[tokio::test]
async fn a_new_address_starts_unknown_and_waits_its_initial_delay() {
    within(40, async {
        let server = HttpServer::start(200).await;
        let probing = Probing::start();
        let fresh = key("fresh");
        let check = json!({"name": "up", "http": {"port": "web"}, "initialDelaySeconds": 2});
        let started = Instant::now();
        probing.watch_local(&fresh, server.port, [check]);
        assert_eq!(probing.engine.readiness(&fresh), local(false));
        let report = probing.engine.report(&fresh).expect("a report");
        assert_eq!(report.addresses[0].state, U);
        assert_eq!(report.addresses[0].checks[0].state, U);

        // Seeded not ready: not ready at once, and not unknown.
        let down = key("seeded-down");
        let check = json!({"name": "up", "http": {"port": "web", "path": "/down"}});
        probing.watch_seeded(&down, server.port, [check], false);
        let report = probing.engine.report(&down).expect("a report");
        assert_eq!(report.addresses[0].checks[0].state, N);

        probing
            .until(&fresh, "the fresh address ready", |r| {
                r.ready_addresses == 1
            })
            .await;
        probing
            .until(&down, "the seeded address ready", |r| {
                r.ready_addresses == 1
            })
            .await;
        let first = server
            .requests()
            .iter()
            .find(|r| r.target() == "/")
            .map(|r| r.received - started)
            .expect("a probe of the fresh address");
        assert!(
            first >= Duration::from_secs(2),
            "first probe after {first:?}, before the initial delay of 2s"
        );
    })
    .await;
}

#[tokio::test]
async fn a_check_added_to_a_known_service_is_not_seeded() {
    within(40, async {
        let server = HttpServer::start(200).await;
        let probing = Probing::start();
        let svc = key("grows");
        let up = json!({"name": "up", "http": {"port": "web"}});
        probing.watch_seeded(&svc, server.port, [up.clone()], true);
        assert_eq!(probing.engine.readiness(&svc), local(true));

        // The status still says ready, but it was made before this check existed: the
        // address must wait for the new check to pass.
        let new = json!({"name": "new", "http": {"port": "web"}, "initialDelaySeconds": 1});
        probing.watch_seeded(&svc, server.port, [up, new], true);
        let report = probing.engine.report(&svc).expect("a report");
        let new_check = report.addresses[0]
            .checks
            .iter()
            .find(|c| c.name == "new")
            .expect("the new check");
        assert_eq!(new_check.state, U);
        assert_eq!(probing.engine.readiness(&svc), local(false));
        probing
            .until(&svc, "ready once the new check passes", |r| {
                r.ready_addresses == 1
            })
            .await;
    })
    .await;
}
