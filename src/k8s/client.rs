//! The Kubernetes client. kube's own builder leaves reads unbounded and turns TCP
//! keepalive off, so an API server that vanishes without closing its connections (a node
//! lost, a network partition) would hold a request or a watch, and the reconcile or the
//! mirror pass behind it, indefinitely. This builds the same stack with both bounded.

use std::time::Duration;

use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use tower::{BoxError, ServiceBuilder};

/// Opening a connection, TLS included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Sending a request.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence while an answer is awaited: two minutes of it mean a dead peer. A watch is
/// quiet between events, and bookmarks do not reliably keep it talking (a watch of our
/// labelled children on the local control plane heard nothing for two minutes), so every
/// watch asks the server to end it sooner ([`WATCH_TIMEOUT_SECONDS`]).
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the API server keeps a watch open before ending it cleanly; the watcher then
/// resumes from the last version it saw (a request, not a relist). Below
/// [`READ_TIMEOUT`], so that a quiet watch of a healthy server is never taken for a dead
/// one.
pub const WATCH_TIMEOUT_SECONDS: u32 = 100;
/// Idle time before the kernel probes a connection, the gap between probes, and the
/// probes left unanswered before it gives up: a dead peer is noticed within a minute.
const KEEPALIVE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// A client for `config` with bounded connects, writes and reads, and TCP keepalive.
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    let mut http = HttpConnector::new();
    // The scheme is TLS's business, one layer up.
    http.enforce_http(false);
    http.set_keepalive(Some(KEEPALIVE));
    http.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    http.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    let mut connector = TimeoutConnector::new(config.rustls_https_connector_with_connector(http)?);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_write_timeout(Some(WRITE_TIMEOUT));
    connector.set_read_timeout(Some(READ_TIMEOUT));
    // Counted from each request, not from when its pooled connection went idle.
    connector.set_reset_reader_on_write(true);
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// The watcher configuration every watch of ours starts from: ended by the server within
/// [`WATCH_TIMEOUT_SECONDS`].
pub fn watch_config() -> kube::runtime::watcher::Config {
    kube::runtime::watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS)
}
