//! The scheduler: changing targets leaves the others alone, first probes are spread over
//! the period, and no more probes run at once than allowed.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use extsvc::domain::DnsSubdomain;
use extsvc::probe::Tls;
use extsvc::resource::HealthState;
use serde_json::json;

use crate::helpers::{
    LOCALHOST, PATIENCE, Probing, check_names, eventually, fast, find_check, key, local, targets,
    within,
};
use crate::servers::{HangingServer, HttpServer};

#[tokio::test]
async fn changing_targets_keeps_unchanged_checks_running_without_a_reset() {
    within(40, async {
        let server = HttpServer::start(200).await;
        let probing = Probing::start();
        let svc = key("changing");
        let check =
            |name: &str| json!({"name": name, "http": {"port": "web", "path": format!("/{name}")}});
        probing.watch_local(&svc, server.port, [check("a"), check("b")]);
        let before = probing
            .until(&svc, "a twice, b once", |r| {
                find_check(r, LOCALHOST, "a").is_some_and(|a| a.consecutive_successes >= 2)
                    && find_check(r, LOCALHOST, "b").is_some_and(|b| b.last_result.is_some())
            })
            .await;
        let a_before = find_check(&before, LOCALHOST, "a").expect("a").clone();

        probing.watch_local(&svc, server.port, [check("a"), check("c")]);
        let b_probes = server
            .requests()
            .iter()
            .filter(|r| r.target() == "/b")
            .count();
        let report = probing.engine.report(&svc).expect("a report");
        assert_eq!(
            check_names(&report, LOCALHOST),
            ["a", "c"],
            "b is gone, c is new"
        );
        let a = find_check(&report, LOCALHOST, "a").expect("a");
        assert!(a.consecutive_successes >= a_before.consecutive_successes);
        assert_eq!(a.state, HealthState::Ready);
        let c = find_check(&report, LOCALHOST, "c").expect("c");
        assert_eq!((c.state, c.last_result), (HealthState::Unknown, None));
        assert_eq!(
            probing.engine.readiness(&svc),
            local(false),
            "a new check makes the address wait for it"
        );

        // Watch a's count at every poll: it only grows.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut last = a.consecutive_successes;
        loop {
            let report = probing.engine.report(&svc).expect("a report");
            let a = find_check(&report, LOCALHOST, "a")
                .expect("a")
                .consecutive_successes;
            assert!(a >= last, "a's count went from {last} to {a}");
            last = a;
            let c_probed =
                find_check(&report, LOCALHOST, "c").is_some_and(|c| c.last_result.is_some());
            if a >= a_before.consecutive_successes + 2 && c_probed {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{report:#?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let b_probes_after = server
            .requests()
            .iter()
            .filter(|r| r.target() == "/b")
            .count();
        assert!(
            b_probes_after <= b_probes + 1,
            "b is no longer probed (one may have been running): {b_probes}, {b_probes_after}"
        );
        let transitions: Vec<String> = probing
            .engine
            .take_transitions()
            .into_iter()
            .map(|(_, t)| t.check)
            .collect();
        assert_eq!(
            transitions.iter().filter(|c| *c == "a").count(),
            1,
            "a started once: {transitions:?}"
        );
        assert!(transitions.contains(&"c".to_owned()));
    })
    .await;
}

#[tokio::test]
async fn editing_a_check_keeps_its_state_and_probes_the_new_definition_at_once() {
    within(40, async {
        let server = HttpServer::start(200).await;
        let probing = Probing::start();
        let svc = key("edited");
        let check = |path: &str, failures: u32| {
            json!({"name": "web", "failureThreshold": failures, "http": {"port": "web", "path": path}})
        };
        probing.watch_local(&svc, server.port, [check("/old", 1)]);
        probing
            .until_check(&svc, LOCALHOST, "web", "ready", |c| {
                c.state == HealthState::Ready
            })
            .await;

        // A new path and threshold: the same check, so the address stays ready.
        probing.watch_local(&svc, server.port, [check("/new", 2)]);
        assert_eq!(probing.engine.readiness(&svc), local(true));
        eventually("a probe under the new definition", || {
            server.requests().iter().any(|r| r.target() == "/new")
        })
        .await;
        assert_eq!(probing.engine.readiness(&svc), local(true));

        // And the new threshold counts from the edit: two failures, not one.
        server.set_status(503);
        let down = probing
            .until_check(&svc, LOCALHOST, "web", "not ready", |c| {
                c.state == HealthState::NotReady
            })
            .await;
        assert_eq!(down.consecutive_failures, 2);
    })
    .await;
}

#[tokio::test]
async fn a_new_address_of_a_name_starts_with_the_readiness_its_name_had() {
    within(40, async {
        let server = HttpServer::start(200).await;
        let probing = Probing::start();
        let svc = key("rotated");
        let check = || vec![fast(json!({"name": "web", "http": {"port": "web"}}))];
        let from = |ip: IpAddr, name: &str| {
            let name = DnsSubdomain::parse(name).expect("a DNS name");
            let mut targets = targets(ip, server.port, check());
            for target in &mut targets {
                target.resolved_from = Some(name.clone());
            }
            targets
        };
        probing.watch(&svc, LOCALHOST, from(LOCALHOST, "db.example.com"));
        probing
            .until_check(&svc, LOCALHOST, "web", "ready", |c| {
                c.state == HealthState::Ready
            })
            .await;

        // The name now resolves to another IP (nothing listens there); a second name
        // appears too, with no history.
        let rotated: IpAddr = "127.0.0.2".parse().expect("an IP");
        let other: IpAddr = "127.0.0.3".parse().expect("an IP");
        let mut wanted = from(rotated, "db.example.com");
        wanted.extend(from(other, "other.example.com"));
        probing
            .engine
            .set_targets(&svc, vec![rotated, other], wanted, &BTreeMap::new());
        assert_eq!(
            probing.engine.readiness(&svc),
            BTreeMap::from([(rotated, true), (other, false)])
        );

        // A head start only: its own probes decide from then on.
        probing
            .until_check(&svc, rotated, "web", "refused", |c| {
                c.state == HealthState::NotReady
            })
            .await;
    })
    .await;
}

#[tokio::test]
async fn first_probes_of_many_targets_spread_over_the_period() {
    within(40, async {
        const TARGETS: usize = 200;
        let server = HttpServer::start(200).await;
        let probing = Probing::start();
        let started = Instant::now();
        for i in 0..TARGETS {
            let check = json!({
                "name": "up",
                "http": {"port": "web", "path": format!("/t{i}")},
                "periodSeconds": 2,
            });
            probing.watch_local(&key(&format!("spread-{i}")), server.port, [check]);
        }
        eventually("every target probed", || {
            let requests = server.requests();
            requests
                .iter()
                .map(|r| r.target())
                .collect::<HashSet<_>>()
                .len()
                == TARGETS
        })
        .await;

        let mut first: BTreeMap<String, Duration> = BTreeMap::new();
        for request in server.requests() {
            first
                .entry(request.target().to_owned())
                .or_insert(request.received - started);
        }
        let mut offsets: Vec<Duration> = first.into_values().collect();
        offsets.sort();
        let (earliest, latest) = (offsets[0], offsets[TARGETS - 1]);
        assert!(
            latest - earliest >= Duration::from_secs(1),
            "first probes from {earliest:?} to {latest:?}: not spread over the 2s period"
        );
        assert!(
            latest < Duration::from_millis(3500),
            "last first probe at {latest:?}"
        );
        let busiest = offsets
            .iter()
            .enumerate()
            .map(|(i, start)| {
                offsets[i..]
                    .iter()
                    .take_while(|t| **t - *start < Duration::from_millis(100))
                    .count()
            })
            .max()
            .unwrap_or_default();
        assert!(
            busiest <= 60,
            "{busiest} of {TARGETS} first probes within 100 ms"
        );
        let slices: HashSet<u128> = offsets
            .iter()
            .filter(|t| **t < Duration::from_secs(2))
            .map(|t| t.as_millis() / 200)
            .collect();
        assert!(
            slices.len() >= 6,
            "first probes in only {} of the ten 200 ms slices",
            slices.len()
        );
    })
    .await;
}

#[tokio::test]
async fn no_more_probes_run_at_once_than_max_in_flight() {
    within(40, async {
        let server = HttpServer::start(200).await;
        server.set_delay(Duration::from_millis(300));
        let tls = Tls::with_roots(rustls::RootCertStore::empty()).expect("TLS settings");
        let probing = Probing::with(tls, 2);
        // Two services, as each may hold only its share (here one) of the two turns.
        let services = [key("bounded-a"), key("bounded-b")];
        for svc in &services {
            let checks = (0..5).map(|i| {
                let path = format!("/c{i}");
                json!({"name": format!("c{i}"), "http": {"port": "web", "path": path}})
            });
            probing.watch_local(svc, server.port, checks);
        }

        // Ten probes a second want in; two at a time of 300 ms let 6.7 through.
        eventually("fourteen probes", || server.request_count() >= 14).await;
        assert_eq!(
            server.max_concurrent(),
            2,
            "at most two at once, and the two are used"
        );
        for svc in &services {
            let report = probing.engine.report(svc).expect("a report");
            for check in &report.addresses[0].checks {
                assert_eq!(
                    check.last_error, None,
                    "waiting for a turn does not count against the timeout: {check:?}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_service_whose_backends_hang_cannot_take_the_turns_of_the_others() {
    within(40, async {
        let tarpit = HangingServer::start().await;
        let healthy = HttpServer::start(200).await;
        let tls = Tls::with_roots(rustls::RootCertStore::empty()).expect("TLS settings");
        // Sixteen turns, of which one service may hold two. The tarpit's sixteen checks
        // each hang for the whole of their period: without a share they would hold all
        // sixteen turns within a period, and keep them.
        let probing = Probing::with(tls, 16);
        let stuck = key("tarpit");
        let checks = (0..16).map(|i| {
            json!({"name": format!("c{i}"), "timeoutSeconds": 1, "periodSeconds": 1,
                   "http": {"port": "web", "path": format!("/c{i}")}})
        });
        probing.watch(
            &stuck,
            LOCALHOST,
            targets(LOCALHOST, tarpit.port, checks.collect()),
        );
        // Three periods' worth of its turns.
        eventually("the tarpit holds its turns", || tarpit.accepted() >= 6).await;

        let svc = key("beside-the-tarpit");
        probing.watch_local(
            &svc,
            healthy.port,
            [json!({"name": "up", "http": {"port": "web"}})],
        );
        probing
            .until_check(
                &svc,
                LOCALHOST,
                "up",
                "probed while the tarpit hangs",
                |c| c.state == HealthState::Ready,
            )
            .await;
        // Two at once, and at most two more whose end the server had yet to notice.
        assert!(
            tarpit.max_open() <= 4,
            "the tarpit got only its share, not {}",
            tarpit.max_open()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_service_is_never_probed_again_even_when_forgetting_races_a_change() {
    within(40, async {
        let server = HttpServer::start(200).await;
        let probing = Probing::start();
        let svc = key("racing");
        let check = json!({"name": "up", "http": {"port": "web"}});
        let targets = targets(LOCALHOST, server.port, vec![fast(check)]);

        // One thread keeps setting the service's targets, another keeps forgetting it, as
        // a reconcile and the periodic sweep of deleted resources may.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let setter = {
            let (engine, stop, svc) = (probing.engine.clone(), stop.clone(), svc.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    engine.set_targets(&svc, vec![LOCALHOST], targets.clone(), &BTreeMap::new());
                }
            })
        };
        let forgetter = {
            let (engine, stop) = (probing.engine.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    engine.retain(&HashSet::new());
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        setter.join().expect("setter");
        forgetter.join().expect("forgetter");
        probing.engine.retain(&HashSet::new());
        assert!(probing.engine.report(&svc).is_none());

        // Probes already running finish within their 1s timeout; after that, nothing.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let settled = server.request_count();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let later = server.request_count();
        assert_eq!(
            later - settled,
            0,
            "probes of a forgotten service: {settled} requests, then {later}"
        );
    })
    .await;
}
