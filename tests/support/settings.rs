//! The settings every test server starts from: a free port on loopback, one worker, a
//! small pool, and tokens the tests know.

use extsvc::config::{KubernetesSettings, Settings};
use secrecy::SecretString;

/// The platform admin's token of every test server.
pub const ADMIN_TOKEN: &str = "test-platform-admin-token-0123456789";
/// The token that reads `/metrics`.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789abcdef";

pub fn settings(database_url: &str, kubernetes: KubernetesSettings) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("an address"),
        database_url: SecretString::from(database_url),
        database_max_connections: Some(4),
        max_services_per_namespace: 5000,
        admin_token: Some(SecretString::from(ADMIN_TOKEN)),
        admin_token_file: None,
        metrics_token: Some(SecretString::from(METRICS_TOKEN)),
        open_metrics: false,
        auth_config: None,
        max_services_per_team: 1000,
        // Tests call as fast as they can; the rate limit has a test of its own.
        rate_limit: 1_000_000,
        audit_retention_days: 90,
        event_retention_minutes: 60,
        max_watches: 10_000,
        denied_cidrs: None,
        allowed_cidrs: None,
        cluster_cidrs: None,
        ingress_classes: None,
        denied_ingress_annotations: None,
        allow_catch_all_ingress: false,
        workers: Some(1),
        kubernetes,
    }
}

/// An HTTP client that sends `token` with every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}
