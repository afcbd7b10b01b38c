//! Running one probe: a fresh connection every time (a kept-alive one would hide a dead
//! backend), bounded by the check's timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;

use crate::domain::{AddressPolicy, Probe};
pub use crate::metrics::Outcome as Class;

use super::state::Outcome;
use super::target::ProbeTarget;
use super::{grpc, http};

/// Why a probe failed; its `Display` is what users read in the health API.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timeout after {}", seconds(*.0))]
    Timeout(Duration),
    #[error("connection refused")]
    Refused,
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(std::io::Error),
    /// The server answered, with a status not in `expectedStatuses`.
    #[error("status {0}")]
    Status(u16),
    #[error("malformed response: {0}")]
    Malformed(String),
    /// A gRPC health answer other than SERVING, or a gRPC error.
    #[error("{0}")]
    Grpc(String),
    /// Not connected to at all.
    #[error("not probed: {0}")]
    Denied(String),
}

/// How many characters of a backend's own text (a status line, a gRPC message) an error
/// quotes, and the most an error stored in the health report can hold.
const EXCERPT_CHARS: usize = 80;
const MAX_ERROR_CHARS: usize = 256;

/// The start of `text`, with control characters, quotes and backslashes escaped, so
/// that what a backend sends reaches the health API and the logs short and inert.
pub(super) fn excerpt(text: &str) -> String {
    let mut quoted: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        quoted.push('…');
    }
    quoted
}

/// `error`'s text, cut at [`MAX_ERROR_CHARS`].
fn bounded(error: &ProbeError) -> String {
    let text = error.to_string();
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

impl ProbeError {
    pub fn class(&self) -> Class {
        match self {
            Self::Status(_) | Self::Grpc(_) => Class::Failure,
            Self::Timeout(_) => Class::Timeout,
            _ => Class::Error,
        }
    }
}

/// Kind of check, for metrics.
pub fn kind(probe: &Probe) -> &'static str {
    match probe {
        Probe::Http(http) if http.tls.is_some() => "https",
        Probe::Http(_) => "http",
        Probe::Tcp { .. } => "tcp",
        Probe::Grpc { .. } => "grpc",
    }
}

/// TLS settings shared by every HTTPS probe.
#[derive(Clone)]
pub struct Tls {
    pub verified: Arc<rustls::ClientConfig>,
    pub unverified: Arc<rustls::ClientConfig>,
}

impl Tls {
    /// Verification against the system's trusted roots; certificates the system store
    /// cannot parse are skipped rather than failing every probe.
    pub fn from_system_roots() -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        Self::with_roots(roots)
    }

    pub fn with_roots(roots: rustls::RootCertStore) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verified = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let unverified = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(http::AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Self {
            verified: Arc::new(verified),
            unverified: Arc::new(unverified),
        })
    }
}

/// How probes reach backends: TLS for HTTPS checks, and the address policy, checked
/// again just before every connection (a target may predate a stricter policy).
#[derive(Clone)]
pub struct Dialer {
    pub tls: Tls,
    pub policy: Arc<AddressPolicy>,
}

/// Runs one probe of `target`.
pub async fn run(target: &ProbeTarget, dialer: &Dialer) -> (Outcome, Class) {
    let timeout = target.check.timing.timeout();
    let address = SocketAddr::new(target.ip, target.port);
    let started = Instant::now();
    let at = SystemTime::now();
    let probe = async {
        // The controller hands over only addresses the service's namespace may use; this
        // is the last line against one no namespace may use (a DNS answer that changed).
        dialer
            .policy
            .check_anywhere(target.ip)
            .map_err(ProbeError::Denied)?;
        probe(address, &target.check.probe, &dialer.tls).await
    };
    let result = match tokio::time::timeout(timeout, probe).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout(timeout)),
    };
    let latency = started.elapsed();
    let class = result
        .as_ref()
        .map_or_else(ProbeError::class, |()| Class::Success);
    let outcome = Outcome {
        success: result.is_ok(),
        error: result.err().as_ref().map(bounded),
        latency,
        at,
    };
    (outcome, class)
}

async fn probe(address: SocketAddr, probe: &Probe, tls: &Tls) -> Result<(), ProbeError> {
    match probe {
        Probe::Tcp { .. } => connect(address).await.map(drop),
        Probe::Http(check) => http::probe(address, check, tls).await,
        Probe::Grpc { service, .. } => grpc::probe(address, service.as_deref()).await,
    }
}

pub(super) async fn connect(address: SocketAddr) -> Result<TcpStream, ProbeError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ProbeError::Refused,
            _ => ProbeError::Connect(e),
        })?;
    // Requests are written whole; no point waiting for more.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// `ip:port` as a URL authority (IPv6 in brackets).
pub(super) fn authority(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_short_and_escaped() {
        assert_eq!(excerpt("SSH-2.0-OpenSSH"), "SSH-2.0-OpenSSH");
        assert_eq!(excerpt("a\r\n\x1b[2J\"b\""), "a\\r\\n\\u{1b}[2J\\\"b\\\"");
        let long = excerpt(&"é".repeat(1000));
        assert_eq!(long.chars().count(), EXCERPT_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_stored_error_is_bounded() {
        let error = ProbeError::Tls("x".repeat(10_000));
        assert_eq!(bounded(&error).chars().count(), MAX_ERROR_CHARS + 1);
        assert_eq!(bounded(&ProbeError::Refused), "connection refused");
    }
}
