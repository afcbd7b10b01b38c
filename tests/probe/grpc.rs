//! gRPC checks against a real `grpc.health.v1.Health` server (tonic-health).

use extsvc::resource::{HealthState, ProbeResult};
use serde_json::json;

use crate::helpers::{LOCALHOST, Probing, key, local, within};
use crate::servers::{GrpcHealthServer, HostileGrpcServer, Hostility};

#[tokio::test]
async fn a_grpc_check_follows_the_serving_status_of_its_service() {
    within(40, async {
        let server = GrpcHealthServer::start().await;
        server.set("db", true).await;
        let probing = Probing::start();
        let svc = key("grpc");
        let check = json!({"name": "db", "grpc": {"port": "web", "service": "db"}});
        probing.watch_local(&svc, server.port, [check]);

        let serving = probing
            .until_check(&svc, LOCALHOST, "db", "SERVING", |c| {
                c.state == HealthState::Ready
            })
            .await;
        assert_eq!(serving.last_result, Some(ProbeResult::Success));
        assert_eq!(probing.engine.readiness(&svc), local(true));

        server.set("db", false).await;
        let down = probing
            .until_check(&svc, LOCALHOST, "db", "NOT_SERVING", |c| {
                c.state == HealthState::NotReady
            })
            .await;
        assert_eq!(down.last_error.as_deref(), Some("NOT_SERVING"));
        assert_eq!(probing.engine.readiness(&svc), local(false));

        server.set("db", true).await;
        probing
            .until_check(&svc, LOCALHOST, "db", "SERVING again", |c| {
                c.state == HealthState::Ready
            })
            .await;
        assert_eq!(probing.engine.readiness(&svc), local(true));
    })
    .await;
}

#[tokio::test]
async fn a_grpc_check_on_the_whole_server_passes_and_on_an_unknown_service_fails() {
    within(30, async {
        let server = GrpcHealthServer::start().await;
        let probing = Probing::start();
        let whole = key("grpc-whole");
        let check = json!({"name": "server", "grpc": {"port": "web"}});
        probing.watch_local(&whole, server.port, [check]);
        let unknown = key("grpc-unknown");
        let check = json!({"name": "nope", "grpc": {"port": "web", "service": "nope"}});
        probing.watch_local(&unknown, server.port, [check]);

        probing
            .until_check(&whole, LOCALHOST, "server", "the empty service", |c| {
                c.state == HealthState::Ready
            })
            .await;
        let failed = probing
            .until_check(&unknown, LOCALHOST, "nope", "an unknown service", |c| {
                c.last_result.is_some()
            })
            .await;
        assert_eq!(failed.state, HealthState::NotReady);
        assert_eq!(
            failed.last_error.as_deref(),
            Some("gRPC status 5 service not registered"),
            "the server's grpc-message, percent-decoded"
        );
        assert_eq!(probing.engine.readiness(&unknown), local(false));
    })
    .await;
}

#[tokio::test]
async fn an_endless_answer_fails_at_once_instead_of_being_read_until_the_timeout() {
    within(30, async {
        let server = HostileGrpcServer::start(Hostility::EndlessBody).await;
        let probing = Probing::start();
        let svc = key("grpc-endless");
        // Its own timeout would end it after 4 s; the cap ends it at the first 1 KiB.
        let check = json!({"name": "flood", "timeoutSeconds": 4, "periodSeconds": 4, "grpc": {"port": "web"}});
        probing.watch_local(&svc, server.port, [check]);

        let failed = probing
            .until_check(&svc, LOCALHOST, "flood", "a failed probe", |c| {
                c.last_result.is_some()
            })
            .await;
        assert_eq!(failed.state, HealthState::NotReady);
        assert_eq!(
            failed.last_error.as_deref(),
            Some("malformed response: an answer longer than 1024 bytes")
        );
    })
    .await;
}

#[tokio::test]
async fn a_huge_grpc_message_is_neither_kept_nor_shown() {
    within(30, async {
        // One just under the header limit is quoted as an excerpt; one above it (h2 would
        // take up to 16 MiB by default) is refused as a protocol error.
        let quoted = HostileGrpcServer::start(Hostility::LongMessage { len: 12 * 1024 }).await;
        let refused = HostileGrpcServer::start(Hostility::LongMessage { len: 1024 * 1024 }).await;
        let probing = Probing::start();
        let (svc_quoted, svc_refused) = (key("grpc-quoted"), key("grpc-refused"));
        let check = json!({"name": "long", "grpc": {"port": "web"}});
        probing.watch_local(&svc_quoted, quoted.port, [check.clone()]);
        probing.watch_local(&svc_refused, refused.port, [check]);

        for svc in [&svc_quoted, &svc_refused] {
            let failed = probing
                .until_check(svc, LOCALHOST, "long", "a failed probe", |c| {
                    c.last_result.is_some()
                })
                .await;
            assert_eq!(failed.state, HealthState::NotReady);
            let error = failed.last_error.expect("an error");
            assert!(
                error.chars().count() <= 257,
                "{} chars: {error}",
                error.len()
            );
            if svc == &svc_quoted {
                assert!(error.starts_with("gRPC status 14 mmmm"), "{error}");
                assert!(error.ends_with('…'), "{error}");
            } else {
                assert!(!error.contains("mmmmmmmm"), "{error}");
            }
        }
    })
    .await;
}
