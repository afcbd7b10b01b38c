//! HTTPS checks: certificates are verified unless the check says otherwise, by the name
//! in `host` when there is one and by the IP address when there is not.

use extsvc::probe::{DEFAULT_MAX_IN_FLIGHT, Tls};
use extsvc::resource::HealthState;
use serde_json::json;

use crate::helpers::{LOCALHOST, Probing, find_check, key, within};
use crate::servers::{Authority, HttpServer, Identity};

#[tokio::test]
async fn a_self_signed_certificate_fails_verification_unless_it_is_skipped() {
    within(30, async {
        let identity = Identity::self_signed(&["localhost", "127.0.0.1"]);
        let server = HttpServer::start_tls(200, identity.server_config()).await;
        let tls = Tls::from_system_roots().expect("TLS settings");
        let probing = Probing::with(tls, DEFAULT_MAX_IN_FLIGHT);
        let svc = key("self-signed");
        let checks = [
            json!({"name": "verified", "http": {"port": "web", "scheme": "HTTPS"}}),
            json!({
                "name": "skipped",
                "http": {"port": "web", "scheme": "HTTPS", "insecureSkipVerify": true},
            }),
        ];
        probing.watch_local(&svc, server.port, checks);

        let report = probing.until_all_probed(&svc, "both checks probed").await;
        let verified = find_check(&report, LOCALHOST, "verified").expect("verified");
        assert_eq!(verified.state, HealthState::NotReady);
        let error = verified.last_error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("TLS: ") && error.to_lowercase().contains("certificate"),
            "a TLS error about the certificate, not {error:?}"
        );
        let skipped = find_check(&report, LOCALHOST, "skipped").expect("skipped");
        assert_eq!(skipped.state, HealthState::Ready, "{skipped:?}");
        assert_eq!(skipped.last_error, None);
        // Only the skipping check got as far as a request.
        assert!(
            server
                .requests()
                .iter()
                .all(|r| r.line() == "GET / HTTP/1.1")
        );
    })
    .await;
}

#[tokio::test]
async fn a_certificate_from_a_trusted_authority_verifies_by_host_or_by_ip_san() {
    within(30, async {
        let authority = Authority::new();
        let by_name =
            HttpServer::start_tls(200, authority.issue(&["localhost"]).server_config()).await;
        let by_ip =
            HttpServer::start_tls(200, authority.issue(&["127.0.0.1"]).server_config()).await;
        let tls = Tls::with_roots(authority.roots()).expect("TLS settings");
        let probing = Probing::with(tls, DEFAULT_MAX_IN_FLIGHT);
        let svc = key("trusted");
        let checks = [
            json!({
                "name": "with-host",
                "http": {"port": "web", "scheme": "HTTPS", "host": "localhost", "path": "/named"},
            }),
            json!({"name": "without-host", "http": {"port": "web", "scheme": "HTTPS"}}),
            json!({"name": "ip-san", "http": {"port": by_ip.port, "scheme": "HTTPS"}}),
        ];
        probing.watch_local(&svc, by_name.port, checks);

        let report = probing.until_all_probed(&svc, "every check probed").await;
        let with_host = find_check(&report, LOCALHOST, "with-host").expect("with-host");
        assert_eq!(with_host.state, HealthState::Ready, "{with_host:?}");
        let without_host = find_check(&report, LOCALHOST, "without-host").expect("without-host");
        assert_eq!(without_host.state, HealthState::NotReady);
        let error = without_host.last_error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("TLS: ") && error.to_lowercase().contains("certificate"),
            "a certificate for localhost only is not valid for 127.0.0.1: {error:?}"
        );
        let ip_san = find_check(&report, LOCALHOST, "ip-san").expect("ip-san");
        assert_eq!(ip_san.state, HealthState::Ready, "{ip_san:?}");

        let named = by_name.requests();
        assert!(!named.is_empty());
        for request in &named {
            assert_eq!(
                request.target(),
                "/named",
                "only the check with host got through"
            );
            assert_eq!(request.sni.as_deref(), Some("localhost"));
            assert_eq!(request.header("host"), Some("localhost"));
        }
        let plain = by_ip.requests();
        assert!(!plain.is_empty());
        for request in &plain {
            assert_eq!(
                request.sni, None,
                "no server name is sent for an IP address"
            );
            let authority = format!("127.0.0.1:{}", by_ip.port);
            assert_eq!(request.header("host"), Some(authority.as_str()));
        }
    })
    .await;
}
