//! HTTP and TCP checks: what passes, what fails and why, and what goes on the wire.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};

use chrono::{DateTime, Utc};
use extsvc::resource::{HealthState, ProbeResult};
use serde_json::json;

use crate::helpers::{
    LOCALHOST, Probing, eventually, fast, find_check, key, local, targets, within,
};
use crate::servers::{HangingServer, HttpServer, closed_port};

fn parse_time(time: Option<&String>) -> DateTime<Utc> {
    let time = time.expect("a timestamp");
    DateTime::parse_from_rfc3339(time)
        .unwrap_or_else(|e| panic!("{time:?} is no RFC 3339 time: {e}"))
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_healthy_http_server_makes_its_address_ready() {
    within(30, async {
        let server = HttpServer::start(200).await;
        let mut probing = Probing::start();
        let svc = key("healthy");
        let check = json!({"name": "up", "http": {"port": "web", "path": "/healthz"}});
        probing.watch_local(&svc, server.port, [check]);
        assert_eq!(
            probing.engine.readiness(&svc),
            local(false),
            "an address with a check is not ready before its first probe"
        );

        let first = probing
            .until_check(&svc, LOCALHOST, "up", "a first success", |c| {
                c.consecutive_successes >= 1
            })
            .await;
        assert_eq!(first.state, HealthState::Ready);
        assert_eq!(first.port, server.port);
        assert_eq!(first.last_result, Some(ProbeResult::Success));
        assert_eq!(first.last_error, None);
        assert_eq!(first.consecutive_failures, 0);
        let latency = first.last_latency_ms.expect("a latency");
        assert!(latency > 0.0 && latency < 1000.0, "latency {latency} ms");
        let probed = parse_time(first.last_probe_time.as_ref());
        let age = Utc::now() - probed;
        assert!(
            age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::seconds(5),
            "last probe {probed} is not recent"
        );
        assert!(first.last_transition_time.is_some());
        assert_eq!(probing.engine.readiness(&svc), local(true));
        let report = probing.engine.report(&svc).expect("a report");
        assert_eq!((report.ready_addresses, report.total_addresses), (1, 1));
        assert_eq!(report.addresses[0].state, HealthState::Ready);
        assert!(report.updated_at.is_some());

        let later = probing
            .until_check(&svc, LOCALHOST, "up", "three successes", |c| {
                c.consecutive_successes >= 3
            })
            .await;
        assert!(parse_time(later.last_probe_time.as_ref()) > probed);
        assert_eq!(
            later.last_transition_time, first.last_transition_time,
            "staying ready is no transition"
        );

        let transitions = probing.engine.take_transitions();
        assert_eq!(transitions.len(), 1, "{transitions:#?}");
        let (at, transition) = &transitions[0];
        assert_eq!(at, &svc);
        assert_eq!(
            (
                transition.address.as_str(),
                transition.check.as_str(),
                transition.from,
                transition.to
            ),
            ("127.0.0.1", "up", HealthState::Unknown, HealthState::Ready)
        );
        assert_eq!(transition.error, None);
        assert_eq!(probing.wakes(), 1, "one readiness change, one wake-up");
        assert!(server.requests().iter().all(|r| r.target() == "/healthz"));
    })
    .await;
}

#[tokio::test]
async fn a_server_answering_503_keeps_its_address_not_ready_until_it_recovers() {
    within(30, async {
        let server = HttpServer::start(503).await;
        let probing = Probing::start();
        let svc = key("unavailable");
        let check = json!({"name": "up", "http": {"port": "web"}});
        probing.watch_local(&svc, server.port, [check]);

        let check = probing
            .until_check(&svc, LOCALHOST, "up", "two failures", |c| {
                c.consecutive_failures >= 2
            })
            .await;
        assert_eq!(check.state, HealthState::NotReady);
        assert_eq!(check.last_result, Some(ProbeResult::Failure));
        assert_eq!(check.last_error.as_deref(), Some("status 503"));
        assert_eq!(check.consecutive_successes, 0);
        assert_eq!(probing.engine.readiness(&svc), local(false));
        let transitions = probing.engine.take_transitions();
        assert_eq!(transitions.len(), 1, "{transitions:#?}");
        assert_eq!(
            (transitions[0].1.from, transitions[0].1.to),
            (HealthState::Unknown, HealthState::NotReady)
        );
        assert_eq!(transitions[0].1.error.as_deref(), Some("status 503"));

        server.set_status(200);
        probing
            .until_check(&svc, LOCALHOST, "up", "recovered", |c| {
                c.state == HealthState::Ready
            })
            .await;
        assert_eq!(probing.engine.readiness(&svc), local(true));
    })
    .await;
}

#[tokio::test]
async fn any_status_outside_expected_statuses_fails_and_a_listed_one_passes() {
    within(30, async {
        let server = HttpServer::start(426).await;
        let probing = Probing::start();
        let strict = json!({"name": "strict", "http": {"port": "web"}});
        let lenient = json!({
            "name": "lenient",
            "http": {"port": "web", "expectedStatuses": ["200-399", "426"]},
        });
        let both = key("both");
        probing.watch_local(&both, server.port, [strict, lenient.clone()]);
        let only_lenient = key("lenient");
        probing.watch_local(&only_lenient, server.port, [lenient]);

        let report = probing
            .until(&both, "both checks probed", |r| {
                ["strict", "lenient"].iter().all(|name| {
                    find_check(r, LOCALHOST, name).is_some_and(|c| c.last_result.is_some())
                })
            })
            .await;
        let strict = find_check(&report, LOCALHOST, "strict").expect("strict");
        assert_eq!(strict.state, HealthState::NotReady);
        assert_eq!(strict.last_error.as_deref(), Some("status 426"));
        let lenient = find_check(&report, LOCALHOST, "lenient").expect("lenient");
        assert_eq!(lenient.state, HealthState::Ready);
        assert_eq!(lenient.last_error, None);
        assert_eq!(
            report.addresses[0].state,
            HealthState::NotReady,
            "one failing check makes the address not ready"
        );
        assert_eq!(probing.engine.readiness(&both), local(false));

        probing
            .until(&only_lenient, "426 listed as expected", |r| {
                r.ready_addresses == 1
            })
            .await;
        assert_eq!(probing.engine.readiness(&only_lenient), local(true));
    })
    .await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    within(30, async {
        let server = HangingServer::start().await;
        let probing = Probing::start();
        let svc = key("hanging");
        let check = json!({"name": "up", "http": {"port": "web"}});
        probing.watch_local(&svc, server.port, [check]);

        let check = probing
            .until_check(&svc, LOCALHOST, "up", "a failed probe", |c| {
                c.last_result.is_some()
            })
            .await;
        assert_eq!(check.last_error.as_deref(), Some("timeout after 1s"));
        assert_eq!(check.state, HealthState::NotReady);
        let latency = check.last_latency_ms.expect("a latency");
        assert!(
            (1000.0..3000.0).contains(&latency),
            "a timed-out probe takes its timeout, not {latency} ms"
        );
        assert!(server.accepted() >= 1, "the connection itself succeeded");
    })
    .await;
}

#[tokio::test]
async fn a_closed_port_is_connection_refused_for_http_and_tcp() {
    within(30, async {
        let server = HttpServer::start(200).await;
        let closed = closed_port().await;
        let probing = Probing::start();
        let svc = key("closed");
        // Port numbers that are no declared port: the checks run on every address.
        let checks = [
            json!({"name": "http-closed", "http": {"port": closed}}),
            json!({"name": "tcp-closed", "tcp": {"port": closed}}),
            json!({"name": "tcp-open", "tcp": {"port": "web"}}),
        ];
        probing.watch_local(&svc, server.port, checks);

        let report = probing.until_all_probed(&svc, "every check probed").await;
        for name in ["http-closed", "tcp-closed"] {
            let check = find_check(&report, LOCALHOST, name).expect("check");
            assert_eq!(check.port, closed);
            assert_eq!(
                check.last_error.as_deref(),
                Some("connection refused"),
                "{name}"
            );
            assert_eq!(check.state, HealthState::NotReady, "{name}");
        }
        let open = find_check(&report, LOCALHOST, "tcp-open").expect("tcp-open");
        assert_eq!(open.state, HealthState::Ready);
        assert_eq!(open.last_result, Some(ProbeResult::Success));
        assert_eq!(report.addresses[0].state, HealthState::NotReady);
    })
    .await;
}

#[tokio::test]
async fn every_probe_opens_a_fresh_connection() {
    within(30, async {
        // The server keeps connections alive unless asked not to, so a client that
        // reused one would show fewer connections than requests.
        let server = HttpServer::start(200).await;
        let probing = Probing::start();
        let svc = key("fresh");
        let check = json!({"name": "up", "http": {"port": "web"}});
        probing.watch_local(&svc, server.port, [check]);
        probing
            .until_check(&svc, LOCALHOST, "up", "four probes", |c| {
                c.consecutive_successes >= 4
            })
            .await;
        probing.engine.retain(&HashSet::new());
        // A probe that was already running finishes on its own connection.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        let requests = server.requests();
        assert!(requests.len() >= 4);
        assert_eq!(
            server.accepted(),
            requests.len(),
            "one connection per request"
        );
        for request in &requests {
            assert_eq!(request.header("connection"), Some("close"), "{request:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn requests_carry_the_path_host_headers_and_connection_close() {
    within(30, async {
        let server = HttpServer::start(200).await;
        let probing = Probing::start();
        let svc = key("details");
        let detailed = json!({
            "name": "detailed",
            "http": {
                "port": "web",
                "path": "/healthz?full=1",
                "host": "backend.example.test",
                "headers": [
                    {"name": "X-Probe-Token", "value": "s3cret value"},
                    {"name": "Accept-Language", "value": "en"},
                ],
            },
        });
        let plain = json!({"name": "plain", "http": {"port": "web"}});
        probing.watch_local(&svc, server.port, [detailed, plain]);
        eventually("both checks reach the server", || {
            let requests = server.requests();
            ["/healthz?full=1", "/"]
                .iter()
                .all(|path| requests.iter().any(|r| r.target() == *path))
        })
        .await;

        let requests = server.requests();
        let detailed = requests
            .iter()
            .find(|r| r.target() == "/healthz?full=1")
            .expect("detailed request");
        assert_eq!(detailed.line(), "GET /healthz?full=1 HTTP/1.1");
        assert_eq!(detailed.header("host"), Some("backend.example.test"));
        assert_eq!(detailed.header("x-probe-token"), Some("s3cret value"));
        assert_eq!(detailed.header("accept-language"), Some("en"));
        assert_eq!(detailed.header("connection"), Some("close"));

        let plain = requests
            .iter()
            .find(|r| r.target() == "/")
            .expect("plain request");
        assert_eq!(plain.line(), "GET / HTTP/1.1");
        let authority = format!("127.0.0.1:{}", server.port);
        assert_eq!(plain.header("host"), Some(authority.as_str()));
        assert_eq!(plain.header("connection"), Some("close"));
        assert_eq!(plain.header("x-probe-token"), None);
    })
    .await;
}

#[tokio::test]
async fn the_default_host_of_an_ipv6_address_is_bracketed() {
    within(30, async {
        let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let Ok(server) = HttpServer::start_at(ip, 200).await else {
            eprintln!("no IPv6 loopback on this machine; skipped");
            return;
        };
        let probing = Probing::start();
        let svc = key("six");
        let check = json!({"name": "up", "http": {"port": "web"}});
        probing.watch(&svc, ip, targets(ip, server.port, vec![fast(check)]));
        let check = probing
            .until_check(&svc, ip, "up", "a probe over IPv6", |c| {
                c.last_result.is_some()
            })
            .await;
        assert_eq!(check.state, HealthState::Ready, "{check:?}");
        let authority = format!("[::1]:{}", server.port);
        assert_eq!(
            server.requests()[0].header("host"),
            Some(authority.as_str())
        );
        assert_eq!(probing.engine.readiness(&svc), BTreeMap::from([(ip, true)]));
    })
    .await;
}

#[tokio::test]
async fn an_address_the_policy_denies_is_never_connected_to() {
    within(30, async {
        let server = HttpServer::start(200).await;
        let tls = extsvc::probe::Tls::with_roots(rustls::RootCertStore::empty()).unwrap();
        // The default policy: loopback is denied.
        let probing = Probing::with_policy(
            tls,
            extsvc::probe::DEFAULT_MAX_IN_FLIGHT,
            extsvc::domain::AddressPolicy::default(),
        );
        let svc = key("denied");
        let check = json!({"name": "up", "http": {"port": "web", "path": "/healthz"}});
        probing.watch_local(&svc, server.port, [check]);

        let failed = probing
            .until_check(&svc, LOCALHOST, "up", "three failed probes", |c| {
                c.consecutive_failures >= 3
            })
            .await;
        assert_eq!(
            failed.last_error.as_deref(),
            Some(
                "not probed: 127.0.0.1 is in 127.0.0.0/8 (loopback), which the address policy denies"
            )
        );
        assert_eq!(probing.engine.readiness(&svc), local(false));
        assert_eq!(server.accepted(), 0, "no connection was made");
    })
    .await;
}
